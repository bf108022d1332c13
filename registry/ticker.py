"""A registry part's worker thread: runs its work every `period` seconds until stopped.

The broker away (HostUnavailable) leaves the work for the next tick; any other failure is logged and the
thread lives on, so one bad row never stops enrollment replies or rollout offers for good.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from contracts.errors import HostUnavailable

__all__ = ["Ticker"]


class Ticker:
    def __init__(self, name: str, work: Callable[[], object], period: float, *, log: logging.Logger,
                 failed: str) -> None:
        self.period = period
        self._work, self.logger, self._failed = work, log, failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self._work()
            except HostUnavailable:
                pass                      # the broker is away: the work waits for the next tick
            except Exception:             # the thread lives on; the next tick tries again
                self.logger.exception(self._failed)
