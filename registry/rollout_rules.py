"""The decisions of a staged rollout, as pure functions of what the devices reported (docs/updates.md).

A stable hash of a device's id puts it in one of 100 buckets; the first wave is the devices whose bucket is
below the rollout's percent (at least one device). The failure rate is failures over finished devices
(installed or failed); passing the threshold (strictly more) halts the rollout. The first wave is done when
every device of it that is online has finished; an offline one does not hold the rollout back (its offer
stays retained for when it returns). Then, with no more failures than the threshold, the release goes to
every device.

>>> first_wave(["T-0001"], 10)
['T-0001']
>>> decide({"T-0001": "rolled_back"}, online={"T-0001"}, everyone={"T-0001", "T-0002"}, threshold=20).action
'halt'
>>> decide({"T-0001": "installed"}, online={"T-0001"}, everyone={"T-0001", "T-0002"}, threshold=20)
Decision(action='expand', offer=('T-0002',), detail='first wave 1 installed, 0 failed')
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["FAILED", "FINAL", "IN_PROGRESS", "Decision", "bucket", "decide", "failure_rate_passes",
           "first_wave", "later"]

INSTALLED = "installed"
FAILED = frozenset({"failed", "rolled_back", "refused"})     # the release did not run on the device
FINAL = FAILED | {INSTALLED}
IN_PROGRESS = ("pending", "offered", "downloading")           # in order: chosen, offer sent, fetching


def bucket(device_id: str) -> int:
    """0..99, the same for a device id in every rollout and on every registry.

    >>> bucket("T-0001") == bucket("T-0001")
    True
    """
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % 100


def first_wave(device_ids: Iterable[str], percent: int) -> list[str]:
    """The devices a rollout is offered to first: bucket below percent; at least one when there are any."""
    ids = sorted(set(device_ids))
    chosen = [d for d in ids if bucket(d) < percent]
    if not chosen and ids and percent > 0:
        chosen = [min(ids, key=lambda d: (bucket(d), d))]
    return chosen


def later(old: str, new: str) -> bool:
    """Whether a report moves a device's status on: a final status is kept (a report twice, or a late
    'downloading', changes nothing); an in-progress one moves only forward."""
    if old in FINAL:
        return False
    if new in FINAL:
        return True
    return new in IN_PROGRESS and old in IN_PROGRESS and IN_PROGRESS.index(new) > IN_PROGRESS.index(old)


def failure_rate_passes(statuses: Mapping[str, str], threshold: int) -> bool:
    """More than threshold percent of the finished devices failed."""
    failed = sum(1 for s in statuses.values() if s in FAILED)
    finished = sum(1 for s in statuses.values() if s in FINAL)
    return finished > 0 and failed * 100 > threshold * finished


@dataclass(frozen=True)
class Decision:
    action: str                 # wait, expand, halt or complete
    offer: tuple[str, ...] = ()
    detail: str = ""


def decide(statuses: Mapping[str, str], *, online: Collection[str], everyone: Collection[str],
           threshold: int) -> Decision:
    """What a running rollout does next. statuses: each offered device's status; everyone: the devices
    that should run the release in the end (active ones); online: those connected now."""
    failed = sum(1 for s in statuses.values() if s in FAILED)
    installed = sum(1 for s in statuses.values() if s == INSTALLED)
    tally = f"{installed} installed, {failed} failed"
    if failure_rate_passes(statuses, threshold):
        return Decision("halt", detail=f"failure rate over {threshold} %: {tally}")
    waiting = [d for d, s in statuses.items() if s not in FINAL and d in online]
    rest = tuple(sorted(set(everyone) - set(statuses)))
    if rest:
        if waiting or installed + failed == 0:
            return Decision("wait", detail=tally)
        return Decision("expand", rest, detail=f"first wave {tally}")
    if all(s in FINAL for s in statuses.values()):
        return Decision("complete", detail=tally)
    return Decision("wait", detail=tally)
