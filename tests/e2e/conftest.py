"""Whole-system fixtures: a started Simulator (mosquitto, pcscd + vpcd, registry, terminal) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.terminal.crashpoint import ENV
from hostsim.scenarios import Run
from hostsim.world import Simulator
from tests.e2e.crash_kit import StartSim


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(tmp_path / "sim").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def run(sim: Simulator) -> Run:
    return Run(sim)


@pytest.fixture
def start_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartSim]:
    """A simulator whose first terminal process kills itself at a journal write ("" for nowhere)."""
    made: list[Simulator] = []

    def start(point: str) -> tuple[Simulator, Run]:
        monkeypatch.setenv(ENV, point)
        sim = Simulator(tmp_path / "sim")
        made.append(sim)
        sim.start()
        monkeypatch.delenv(ENV)          # a restarted terminal runs without it
        return sim, Run(sim)

    yield start
    for sim in made:
        sim.stop()
