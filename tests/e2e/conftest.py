"""Whole-system fixtures: a started Simulator (mosquitto, pcscd + vpcd, registry, terminal) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostsim.scenarios import Run
from hostsim.world import Simulator


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
