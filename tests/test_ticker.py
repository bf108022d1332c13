"""registry.ticker: the worker thread of the enrollment and rollout parts."""

from __future__ import annotations

import logging
import threading

import pytest

from contracts.errors import HostUnavailable
from registry.ticker import Ticker


def test_work_runs_every_period_past_failures_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    third = threading.Event()

    def work() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise HostUnavailable("broker away")          # waits for the next tick, nothing logged
        if len(calls) == 2:
            raise RuntimeError("one bad row")             # logged; the thread lives on
        third.set()

    ticker = Ticker("test-ticker", work, 0.01, log=logging.getLogger("test.ticker"), failed="tick failed")
    ticker.start()
    assert third.wait(5)
    ticker.stop()
    done = len(calls)
    assert not ticker._thread.is_alive()
    assert len(calls) == done
    assert [r.getMessage() for r in caplog.records if r.name == "test.ticker"] == ["tick failed"]


def test_stop_before_start_is_harmless() -> None:
    Ticker("idle", lambda: None, 1.0, log=logging.getLogger("test.ticker"), failed="x").stop()
