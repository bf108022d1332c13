"""The six scenarios of issue 18 (wallets on the chip) on ONE simulator started once for this module, with
the terminal's SAM in the second slot of the real pcscd: real pcscd + vpcd, mosquitto, the DART pump line,
the printer, the registry and the terminal. Each scenario has its own card; its checks are the evidence
(what the driver saw, the receipt, the chip's balance, the registry's records, flags, shadow and ledger)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.purse_keys import Purpose
from hostsim.purse_slot import SAM_ID
from hostsim.scenarios import SCENARIOS, SIM_OPTIONS, Run
from hostsim.scenarios_fleet2 import registry_db
from hostsim.scenarios_purse import PANS, PURSE_PROGRAMS, PURSE_SCENARIOS
from hostsim.world import Simulator
from registry.purse.issuer import IssuerKeys
from registry.purse_models import ChipPurse

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDER = ("chip-wallet-offline-sale", "chip-wallet-card-pulled", "chip-wallet-load", "chip-wallet-replay",
         "chip-wallet-limit", "chip-wallet-flash-drive")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    s = Simulator(Path(tmp_path_factory.mktemp("issue18")) / "sim", programs=PURSE_PROGRAMS,
                  purse=True).start()
    try:
        yield s
    finally:
        s.stop()


def test_every_scenario_is_listed_in_order_and_runs_from_forecourt_sim() -> None:
    assert set(ORDER) == set(PURSE_SCENARIOS) and set(ORDER) <= set(SCENARIOS)
    assert all(SIM_OPTIONS[name]["purse"] for name in ORDER)


def _back_to_idle(sim: Simulator) -> None:
    sim.cards.remove()
    if sim.registry is None:
        sim.start_registry()
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
        PURSE_SCENARIOS[name](run)
    except BaseException:
        _back_to_idle(sim)
        raise
    finally:
        sim.panel.listeners.pop()
        print(f"{name}: {time.monotonic() - t0:.1f} s")
        print("\n".join(run.transcript[-80:]))
    assert run.checks == [], run.checks
    text = "\n".join(run.transcript)
    for number in PANS:
        assert number not in text, number[-4:]


def test_no_card_number_or_purse_key_in_the_logs(sim: Simulator) -> None:
    logs = "\n".join((sim.state / name).read_text(errors="replace")
                     for name in ("terminal.log", "registry.log"))
    assert "configuration accepted" in logs
    for number in PANS:
        assert number not in logs, number[-4:]


def _purse_keys(sim: Simulator) -> dict[str, bytes]:
    """Every master, card and SAM key the scenarios used, by a name that says which."""
    with registry_db(sim) as (s, keys):
        issuer = IssuerKeys.load(s, keys, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
        out = {f"master {p.name} v1": issuer._master(p, 1) for p in Purpose}
        for purse in s.scalars(select(ChipPurse)):
            pid = bytes.fromhex(purse.purse_id)
            out |= {f"card {p.name} ...{purse.purse_id[-4:]}": issuer.card_key(pid, p, 1)
                    for p in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN)}
        out["sam"] = issuer.sam_key(SAM_ID, 1)
    return out


def test_no_purse_key_in_any_file_the_simulator_wrote(sim: Simulator) -> None:
    keys = _purse_keys(sim)
    assert len(keys) > 5 + 4 * 6
    needles = {name: (key, key.hex().encode(), key.hex().upper().encode()) for name, key in keys.items()}
    scanned = 0
    for path in sim.state.rglob("*"):
        if not path.is_file() or path.stat().st_size > 50_000_000:
            continue
        data = path.read_bytes()
        scanned += 1
        for name, forms in needles.items():
            assert not any(form in data for form in forms), f"{name} in {path.relative_to(sim.state)}"
    assert scanned > 10
