"""What a fuzz target is, how one input is checked, and how a failure is named.

A target takes raw bytes and feeds them to one parser of untrusted input. The property every target
shares: the parser returns, or raises the typed error its module documents (a contracts.errors class);
anything else, a broken round trip (a Violation) or a run past the time bound (a Hang), is a finding.
The same targets run in `make test` (tests/test_fuzz_*.py, hypothesis, bounded) and in `make fuzz`
(fuzz/run.py, atheris when it is installed, for minutes).
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SEP", "Hang", "Known", "Target", "Violation", "check", "check_known", "parts", "signature",
           "time_limit"]

SEP = b"\xf1\xf2"           # splits one input into the several answers a multi-step target needs
PER_INPUT_SECONDS = 2.0     # no parser may take longer on one input (catches loops that never end)
_ROOT = Path(__file__).resolve().parent.parent


class Violation(AssertionError):
    """A property other than "typed errors only" failed: a round trip, an invariant of the result."""


class Hang(Exception):
    """One input ran past the per-input time bound."""


@dataclass(frozen=True)
class Target:
    """name, the function fed with each input, the errors it may raise, valid inputs to start from."""

    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]] = field(default=list)
    max_len: int = 4096       # inputs longer than what the wire can carry are not generated


@dataclass(frozen=True)
class Known:
    """A reported defect the property tests step over until it is fixed: an exception type raised in
    one file. Its reproducer is an xfail(strict=True) test, so the fix shows as XPASS."""

    error: str          # exception class name, e.g. "KeyError"; "" for any
    path: str           # where it is raised, relative to the repository, e.g. "hostsim/acquirer_host.py"
    example: bytes      # the minimal input that shows it
    reason: str

    def matches(self, exc: BaseException) -> bool:
        return self.matches_signature(signature(exc))

    def matches_signature(self, sig: str) -> bool:
        kind, _, where = sig.partition(" at ")
        return kind == (self.error or kind) and where.startswith(f"{self.path}:")


def parts(data: bytes, count: int) -> list[bytes]:
    """data split at SEP into exactly count pieces (missing ones empty, extra ones kept in the last)."""
    pieces = data.split(SEP, count - 1)
    return pieces + [b""] * (count - len(pieces))


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread when the block runs longer than seconds (elsewhere: no bound)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"input took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(target: Target, data: bytes, *, seconds: float = PER_INPUT_SECONDS) -> None:
    """Run one input; return when it parsed or raised an allowed error, raise the finding otherwise."""
    try:
        with time_limit(seconds):
            target.run(data)
    except target.allowed:
        return


def signature(exc: BaseException) -> str:
    """Type and the innermost project frame: two inputs that fail alike are one finding."""
    if isinstance(exc, Hang):
        return "Hang"
    frames = traceback.extract_tb(exc.__traceback__)
    where = "?"
    for f in frames:
        path = Path(f.filename)
        if _ROOT in path.parents and "fuzz" not in path.relative_to(_ROOT).parts[:1]:
            where = f"{path.relative_to(_ROOT)}:{f.lineno}"
    if where == "?" and frames:
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    return f"{type(exc).__name__} at {where}"


def check_known(target: Target, data: bytes, known: tuple[Known, ...] = ()) -> None:
    """check(), stepping over the reported defects in known (their xfail tests watch them)."""
    try:
        check(target, data)
    except Exception as exc:
        if not any(k.matches(exc) for k in known):
            raise
