"""The terminal's side of systemd's watchdog: WATCHDOG=1 only while every part of the terminal is alive.

The main loop calls beat("main") every turn (and beat("main", max_age=...) before a step that may
legitimately take long, such as a whole sale: that allowance holds until the next beat); a device thread
is watched (watch(name, thread)) or beats on its own (expect(name, max_age) once, then beat(name)).
A feeder thread sends WATCHDOG=1 every half watchdog interval (sd_watchdog_enabled(3)) while every beat
is younger than its max age and every watched thread is alive. When one is not it stops feeding and
logs once which part is stuck; systemd then kills the terminal (SIGABRT) after WatchdogSec=
and Restart= starts it again, and its journal recovers the sale that was open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Liveness"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 60.0    # seconds a beat stays fresh unless its name was given another max age

ThreadRef = threading.Thread | Callable[[], threading.Thread | None]


@dataclass
class _Beat:
    at: float
    max_age: float


@dataclass
class _Progress:
    counter: Callable[[], int]
    max_age: float
    last: int | None = None
    moved_at: float = 0.0


class Liveness:
    def __init__(self, *, interval: float | None = None, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, default_max_age: float = DEFAULT_MAX_AGE,
                 send: Callable[[str], bool] | None = None) -> None:
        """interval: the watchdog timeout in seconds (default $WATCHDOG_USEC; None: no watchdog, nothing is
        fed, ready() and stopping() are still sent). send: where notifications go (default sd_notify)."""
        from drivers.systemd.notify import notify, watchdog_interval  # firmware reaches drivers lazily

        self.interval = interval if interval is not None else watchdog_interval(environ=environ)
        self.clock, self.default_max_age = clock, default_max_age
        self._send = send if send is not None else (lambda state: notify(state, environ=environ))
        self._lock = threading.Lock()
        self._beats: dict[str, _Beat] = {}
        self._allowed: dict[str, float] = {}        # name -> its usual allowance (expect())
        self._threads: dict[str, ThreadRef] = {}
        self._progress: dict[str, _Progress] = {}   # name -> a counter that must keep moving
        self._reported: tuple[str, ...] = ()       # the stuck parts last logged
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self.fed = 0                                # WATCHDOG=1 sent (for status and tests)

    # -- what the terminal's parts call -----------------------------------------------------------------
    def expect(self, name: str, max_age: float) -> None:
        """`name` beats at least every max_age seconds from now on (its allowance; default 60 s)."""
        with self._lock:
            self._allowed[name] = max_age
        self.beat(name)

    def beat(self, name: str, max_age: float | None = None) -> None:
        """`name` is alive now. max_age: the allowance until its next beat, for this beat only (a step that
        may legitimately take long, such as a whole sale); else the one expect() gave it."""
        now = self.clock()
        with self._lock:
            age = max_age if max_age is not None else self._allowed.get(name, self.default_max_age)
            self._beats[name] = _Beat(now, age)

    def watch(self, name: str, thread: ThreadRef) -> None:
        """Feed only while `thread` is alive; a callable is asked each time (a driver that restarts its
        thread makes a new one), and None from it counts as dead."""
        with self._lock:
            self._threads[name] = thread

    def watch_progress(self, name: str, counter: Callable[[], int], max_age: float) -> None:
        """Feed only while counter() (a polling thread's rounds) has moved within max_age seconds: a thread
        that lives but is blocked (a write that never returns) counts as stuck."""
        with self._lock:
            self._progress[name] = _Progress(counter, max_age, None, self.clock())

    def forget(self, name: str) -> None:
        """`name` is no longer expected (a device closed on purpose)."""
        with self._lock:
            self._beats.pop(name, None)
            self._allowed.pop(name, None)
            self._threads.pop(name, None)
            self._progress.pop(name, None)

    # -- the check --------------------------------------------------------------------------------------
    def stuck(self) -> dict[str, str]:
        """The parts that are not alive now: name -> why."""
        now = self.clock()
        with self._lock:
            beats, threads = dict(self._beats), dict(self._threads)
        out = {name: f"no beat for {now - b.at:.0f} s" for name, b in beats.items() if now - b.at > b.max_age}
        for name, ref in threads.items():
            thread = ref if isinstance(ref, threading.Thread) else ref()
            if thread is None or not thread.is_alive():
                out[name] = "thread ended"
        with self._lock:
            progress = dict(self._progress)
        for name, p in progress.items():
            value = p.counter()
            if value != p.last:
                p.last, p.moved_at = value, now
            elif now - p.moved_at > p.max_age:
                out[name] = f"no progress for {now - p.moved_at:.0f} s"
        return out

    def feed(self) -> bool:
        """One turn of the feeder: WATCHDOG=1 when nothing is stuck; True when it was sent. A change in
        what is stuck is logged (once) and shown in `systemctl status` (STATUS=)."""
        stuck = self.stuck()
        names = tuple(sorted(stuck))
        if names != self._reported:
            if stuck:
                text = ", ".join(f"{name} ({stuck[name]})" for name in names)
                log.error("watchdog not fed: part of the terminal is stuck", extra={"stuck": text})
                self._send("STATUS=stuck: " + text)
            else:
                log.warning("watchdog fed again: every part is alive")
                self._send("STATUS=serving")
            self._reported = names
        if stuck:
            return False
        if self._send("WATCHDOG=1"):
            self.fed += 1
        return True

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the feeder thread (nothing to do without a watchdog). Idempotent."""
        if self.interval is None or self._feeder is not None:
            return
        self._stop.clear()
        self._feeder = threading.Thread(target=self._run, args=(self.interval / 2,), name="watchdog",
                                        daemon=True)
        self._feeder.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.feed()
            self._stop.wait(every)

    def stop(self) -> None:
        feeder, self._feeder = self._feeder, None
        self._stop.set()
        if feeder is not None:
            feeder.join(timeout=5.0)

    def ready(self, text: str = "serving") -> bool:
        """READY=1: start-up (recovery included) is done; systemctl start returns."""
        return self._send("READY=1\nSTATUS=" + " ".join(text.splitlines()))

    def stopping(self, text: str = "stopping") -> bool:
        """STOPPING=1, and no more feeding: the terminal is shutting down on purpose."""
        self.stop()
        return self._send("STOPPING=1\nSTATUS=" + " ".join(text.splitlines()))
