"""The six scenarios of issue 18 (wallets on the chip) on ONE simulator started once for this module, with
the terminal's SAM in the second slot of the real pcscd: real pcscd + vpcd, mosquitto, the DART pump line,
the printer, the registry and the terminal. Each scenario has its own card; its checks are the evidence
(what the driver saw, the receipt, the chip's balance, the registry's records, flags, shadow and ledger)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostsim.scenarios import Run
from hostsim.scenarios_purse import PANS, PURSE_SCENARIOS
from hostsim.world import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDER = ("chip-wallet-offline-sale", "chip-wallet-card-pulled", "chip-wallet-load", "chip-wallet-replay",
         "chip-wallet-limit", "chip-wallet-flash-drive")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    s = Simulator(Path(tmp_path_factory.mktemp("issue18")) / "sim", programs=("purse", "fleet", "bank"),
                  purse=True).start()
    try:
        yield s
    finally:
        s.stop()


def test_every_scenario_is_listed_in_order() -> None:
    assert set(ORDER) == set(PURSE_SCENARIOS)


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
