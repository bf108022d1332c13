"""The terminals' alarms and events as the registry stored them (registry.fleetops on_event): what is open
now per terminal, and a terminal's events newest first.

Open now: the latest of a pair of events says it. door_open / door_closed: the door is open; tamper /
tamper_cleared: out of service until a technician clears the latch; paper_low / paper_ok: the printer's
paper runs out. "Latest" is the last the registry received: events kept in the terminal's outbox while its
link was down arrive late but in the order they happened, and the terminal's clock (`at`) may be wrong, so
it never decides what is open. Alarms in the last ALARM_WINDOW count by the terminal's time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, or_, select
from sqlalchemy.orm import Session

from registry.models import Device, DeviceEvent

__all__ = ["ALARM_WINDOW", "PAIRS", "SEVERITIES", "AlarmState", "alarm_states", "event_position", "events"]

ALARM_WINDOW = dt.timedelta(hours=24)
SEVERITIES = ("info", "warning", "alarm")
PAIRS = {"tamper": ("tamper", "tamper_cleared"),          # what is open: (the code opening, the closing)
         "door": ("door_open", "door_closed"),
         "paper": ("paper_low", "paper_ok")}


@dataclass(frozen=True)
class AlarmState:
    """A terminal's open alarms (each since when, or None) and its alarm count over ALARM_WINDOW."""

    tamper_since: dt.datetime | None = None     # out of service until a technician clears it
    door_open_since: dt.datetime | None = None
    paper_low_since: dt.datetime | None = None
    alarms_recent: int = 0

    @property
    def state(self) -> str:
        """The worst that is open: tamper, door_open, paper_low, or ok.

        >>> AlarmState(door_open_since=dt.datetime(2026, 1, 1)).state
        'door_open'
        """
        if self.tamper_since is not None:
            return "tamper"
        if self.door_open_since is not None:
            return "door_open"
        return "paper_low" if self.paper_low_since is not None else "ok"

    @property
    def tone(self) -> str:
        """alarm (out of service), warning, or ok."""
        return {"tamper": "alarm", "door_open": "alarm", "paper_low": "warning"}.get(self.state, "ok")


def _latest(pair: tuple[str, str]) -> ScalarSelect[int]:
    """The id of a terminal's latest event of the pair, per Device row, in the order the registry received
    them: the terminal sends its events in the order it raised them (its outbox keeps it across an outage),
    and its clock may be wrong (a Pi without its time yet), so its `at` never decides what is open."""
    return (select(DeviceEvent.id)
            .where(DeviceEvent.device_id == Device.id, DeviceEvent.code.in_(pair))
            .order_by(DeviceEvent.id.desc())
            .limit(1).correlate(Device).scalar_subquery())


def alarm_states(s: Session, device_ids: Iterable[str], now: dt.datetime) -> dict[str, AlarmState]:
    """device -> its AlarmState, for every id given that is a device (none open: AlarmState())."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    since = now - ALARM_WINDOW
    recent = (select(func.count(DeviceEvent.id))
              .where(DeviceEvent.device_id == Device.id, DeviceEvent.severity == "alarm",
                     DeviceEvent.at >= since)
              .correlate(Device).scalar_subquery())
    rows = s.execute(select(Device.id, recent, *(_latest(pair) for pair in PAIRS.values()))
                     .where(Device.id.in_(ids))).all()
    latest = {event_id for row in rows for event_id in row[2:] if event_id is not None}
    found = {e.id: e for e in s.scalars(select(DeviceEvent).where(DeviceEvent.id.in_(latest)))} if latest \
        else {}
    out = {}
    for device_id, count, *event_ids in rows:
        open_since: dict[str, dt.datetime | None] = {}
        for name, event_id in zip(PAIRS, event_ids, strict=True):
            event = found.get(event_id)
            open_since[name] = event.at if event is not None and event.code == PAIRS[name][0] else None
        out[device_id] = AlarmState(tamper_since=open_since["tamper"], door_open_since=open_since["door"],
                                    paper_low_since=open_since["paper"], alarms_recent=int(count or 0))
    return out


def event_position(s: Session, device_id: str, event_id: int) -> tuple[dt.datetime, int] | None:
    """Where one of this terminal's events stands in its list (a page's cursor); None if not its event."""
    row = s.execute(select(DeviceEvent.at, DeviceEvent.id)
                    .where(DeviceEvent.id == event_id, DeviceEvent.device_id == device_id)).first()
    return None if row is None else (row[0], row[1])


def events(s: Session, device_id: str, *, limit: int = 50, before: tuple[dt.datetime, int] | None = None,
           severity: str | None = None) -> list[DeviceEvent]:
    """A terminal's events newest first (by its time, then as stored), up to `limit`, older than `before`
    (an event_position) if given, of one severity if given."""
    query = select(DeviceEvent).where(DeviceEvent.device_id == device_id)
    if severity is not None:
        query = query.where(DeviceEvent.severity == severity)
    if before is not None:
        at, event_id = before
        older: ColumnElement[bool] = or_(DeviceEvent.at < at,
                                         and_(DeviceEvent.at == at, DeviceEvent.id < event_id))
        query = query.where(older)
    query = query.order_by(DeviceEvent.at.desc(), DeviceEvent.id.desc()).limit(max(0, limit))
    return list(s.scalars(query))
