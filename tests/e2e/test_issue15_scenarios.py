"""The nine scenarios of issue 15 and the back office's block-a-card scenario (issue 16) on ONE simulator
started once for this module (each scenario has its own cards and accounts), in a fixed order, one test each:
real pcscd + vpcd, mosquitto, the DART pump line, the printer, the registry, the terminal and the back office
(`forecourt web serve`) in headless Chromium. A scenario's own checks are the evidence (what the driver saw,
the receipt, the registry's ledger); each test asserts they all held and that no card number leaked into the
transcript."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.panseal import derive_stop_key, stop_entry
from forecourtcli.main import main
from hostsim.scenarios import SCENARIOS, Run
from hostsim.scenarios_config import running_config
from hostsim.scenarios_fleet2 import _card_id as card_id_of
from hostsim.scenarios_fleet2 import authorize, declined, insert_card, registry_db
from hostsim.scenarios_fleet2 import sale as fleet_sale
from hostsim.scenarios_loyalty import ISSUE15_PROGRAMS, ISSUE15_SCENARIOS, NUMBERS
from hostsim.scenarios_loyalty_kit import use_runner
from hostsim.world import Simulator
from registry.fleet_models import AuditEntry, Card
from tests.web_browser import Browser, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDER = ("gift-card-bonus", "purpose-restricted-shop-only", "loyalty-expiry", "voucher-twice",
         "loyalty-earn-promo", "loyalty-with-bank-card", "loyalty-redeem", "attendant-cash-prepay",
         "attendant-z-report")


def in_process(argv: list[str], stdin: str) -> tuple[int, str, str]:
    """`forecourt ARGV` in this process (a process each costs seconds here): exit code, stdout, stderr."""
    out, err, saved = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:           # argparse: a usage error
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    use_runner(in_process)
    s = Simulator(Path(tmp_path_factory.mktemp("issue15")) / "sim", programs=ISSUE15_PROGRAMS,
                  web=True).start()
    try:
        yield s
    finally:
        s.stop()
        use_runner(None)


def test_every_scenario_is_listed_in_order() -> None:
    assert set(ORDER) == set(ISSUE15_SCENARIOS) and set(ORDER) <= set(SCENARIOS)


def _back_to_idle(sim: Simulator) -> None:
    """After a scenario failed half-way: its card out, CANCEL until the terminal is idle (an attendant's
    menu or a prompt left open)."""
    sim.cards.remove()
    for _ in range(5):
        if sim.panel.screens and sim.panel.screens[-1]["screen"] in ("idle", "idle_bank_only"):
            return
        sim.panel.press("CANCEL")
        time.sleep(1.0)


@pytest.mark.parametrize("name", ORDER)
def test_scenario(sim: Simulator, name: str) -> None:
    run = Run(sim)
    t0 = time.monotonic()
    try:
        ISSUE15_SCENARIOS[name](run)
    except BaseException:
        _back_to_idle(sim)                      # the next scenario starts from the idle screen
        raise
    finally:
        sim.panel.listeners.pop()               # this run's transcript listener (Run added it last)
        print(f"{name}: {time.monotonic() - t0:.1f} s")
        print("\n".join(run.transcript[-80:]))
    assert run.checks == [], run.checks
    text = "\n".join(run.transcript)
    for number in NUMBERS:
        assert number not in text, number[-4:]


def test_no_card_number_in_the_simulators_logs(sim: Simulator) -> None:
    """After all nine: the terminal's and the registry's logs name no card number the scenarios used."""
    logs = "\n".join((sim.state / name).read_text(errors="replace")
                     for name in ("terminal.log", "registry.log"))
    assert "configuration accepted" in logs                     # the terminal's log is there
    for number in NUMBERS:
        assert number not in logs, number[-4:]


def test_a_card_blocked_in_the_back_office_is_declined_at_the_pump(sim: Simulator, tmp_path: Path) -> None:
    """The fleet customer's manager (the simulator's ACME sign-in) sees the card's sale appear on the open
    sales page, blocks the card in the browser: the terminal's stop-list carries it within a minute and the
    next sale with it is declined."""
    from registry.web.screenshots import chromium

    assert sim.web is not None
    run = Run(sim)
    pan = "7077004000000021"                       # ACME DIESEL ONLY, customer ACME (hostsim seed)
    entry = stop_entry(derive_stop_key(bytes.fromhex(sim.device["pin_key"])), pan)
    driver = chromium(tmp_path)
    try:
        web = Browser(driver, tmp_path, sim.web.url.rstrip("/"))
        web.sign_in("acme@demo.test", "acme-demo-pass")
        wait_for(lambda: web.all("#who"), what="the fleet customer's home page")
        web.go("/sales")                           # open before the sale: it appears without a reload
        first = fleet_sale(run, pan)
        assert first.synced and run.checks == [], run.checks
        wait_for(lambda: "******0021" in web.find("#sales").text, 15, "the sale on the live page")
        with registry_db(sim) as (s, keys):
            card = card_id_of(s, keys, pan)
        web.go(f"/customer/cards/{card}")
        web.find("#block-form input[name=reason]").send_keys("driver lost it")
        web.find("#block").click()
        wait_for(lambda: _alert(driver), 5, "the confirmation").accept()
        t0 = time.monotonic()
        wait_for(lambda: "done=" in web.path(), what="the card page after the block")
        assert not web.all("#block-form")
    finally:
        driver.quit()
    wait_for(lambda: entry in ((running_config(sim) or {}).get("body", {}).get("stop_list", [])), 60,
             "the stop-list on the terminal")
    reached = time.monotonic() - t0
    print(f"blocked in the browser -> on the terminal's stop-list: {reached:.1f} s")
    assert reached < 60
    mark = insert_card(run, pan)
    declined(run, mark, authorize(run, mark), "card_blocked")
    assert run.checks == [], run.checks
    with registry_db(sim) as (s, _):
        row = s.get(Card, card)
        actors = [a.actor for a in s.scalars(select(AuditEntry).where(AuditEntry.subject == f"card:{card}"))]
    assert row is not None and row.status == "blocked"
    assert "web:acme@demo.test" in actors


def _alert(driver: object) -> object | None:
    from selenium.common.exceptions import NoAlertPresentException
    try:
        return driver.switch_to.alert          # type: ignore[attr-defined]
    except NoAlertPresentException:
        return None
