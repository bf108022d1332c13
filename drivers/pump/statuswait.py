"""Waiting for a pump status, shared by every pump controller: the status table is guarded by a condition
that the controller notifies on each change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from contracts.errors import PumpTimeout
from contracts.pump import PumpStatus

__all__ = ["wait_in_table"]


def wait_in_table(cond: threading.Condition, table: Mapping[int, PumpStatus], pump: int,
                predicate: Callable[[PumpStatus], bool], timeout: float) -> PumpStatus:
    """The pump's first status (in table, under cond) that satisfies predicate; PumpTimeout after timeout."""
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            st = table[pump]
            if predicate(st):
                return st
            left = deadline - time.monotonic()
            if left <= 0:
                raise PumpTimeout("pump status not reached", pump=pump, state=st.state.value)
            cond.wait(left)
