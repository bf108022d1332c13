"""What the whole-system crash tests share: the price they sell at and a wait that names what it waited for.
The fixture `start_sim` (a simulator whose terminal kills itself at a journal write) is in conftest.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from hostsim.scenarios import Run
from hostsim.world import Simulator

PRICE = 1659                    # pump 1 nozzle 1 in hostsim/fixtures/seed.toml

StartSim = Callable[[str], tuple[Simulator, Run]]


def cents(cl: int) -> int:
    return (cl * PRICE + 500) // 1000


def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
