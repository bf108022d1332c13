"""The nine scenarios of issue 15 on ONE simulator started once for this module (each scenario has its own
cards and accounts), in a fixed order, one test each: real pcscd + vpcd, mosquitto, the DART pump line, the
printer, the registry and the terminal. A scenario's own checks are the evidence (what the driver saw, the
receipt, the registry's ledger); each test asserts they all held and that no card number leaked into the
transcript."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecourtcli.main import main
from hostsim.scenarios import SCENARIOS, Run
from hostsim.scenarios_loyalty import ISSUE15_PROGRAMS, ISSUE15_SCENARIOS, NUMBERS
from hostsim.scenarios_loyalty_kit import use_runner
from hostsim.world import Simulator

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
    s = Simulator(Path(tmp_path_factory.mktemp("issue15")) / "sim", programs=ISSUE15_PROGRAMS).start()
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
