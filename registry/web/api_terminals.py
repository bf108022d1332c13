"""The network's terminals as JSON, and the endpoint functions the terminals page renders: link state,
versions run and wanted, backlog, last seen; operators accept a pending terminal and revoke one.

Online: the broker says the terminal is connected (its status, or a heartbeat: registry.fleetops) and its
last heartbeat is at most ONLINE_WITHIN old. A terminal beats every minute; a registry that missed the last
will of a terminal whose link died would otherwise show it online for ever. Missing sales: the terminal's
sale numbers the registry has not received between 1 and the highest it has (as registry.reports.gaps),
counted for the terminals shown only. Revoking needs the fleet's authority (WebSettings.tls_dir): without
it, the API refuses and the page shows the button disabled, saying why.

Alarms (registry.device_alarms): each terminal's open ones (tamper not cleared, door open, paper low) and
its alarms of the last 24 hours; a terminal's events newest first, a page at a time (`before`: the last
event id of the page before), of one severity if asked. An event's code and detail come from the terminal:
data to show (escaped), never markup or a key.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from registry import device_alarms, devices
from registry.fleet.admin import audit
from registry.models import Device, DeviceEvent, Station, Transaction
from registry.pki import Authority
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput, NotFound
from registry.web.scope import station_for, station_ids

__all__ = ["EVENTS_PAGE", "ONLINE_WITHIN", "router"]

router = APIRouter()
ONLINE_WITHIN = dt.timedelta(minutes=3)     # three heartbeats
EVENTS_PAGE = 50


class AlarmOut(BaseModel):
    state: str                     # the worst open: tamper, door_open, paper_low, or ok
    tone: str                      # alarm (out of service), warning, or ok
    tamper: bool                   # tamper switch tripped: out of service until a technician clears it
    tamper_since: dt.datetime | None
    door_open: bool                # the latest of door_open and door_closed is door_open
    door_open_since: dt.datetime | None
    paper_low: bool
    paper_low_since: dt.datetime | None
    alarms_24h: int                # events of severity alarm in the last 24 hours (the terminal's time)

    @classmethod
    def of(cls, state: device_alarms.AlarmState) -> AlarmOut:
        return cls(state=state.state, tone=state.tone, tamper=state.tamper_since is not None,
                   tamper_since=state.tamper_since, door_open=state.door_open_since is not None,
                   door_open_since=state.door_open_since, paper_low=state.paper_low_since is not None,
                   paper_low_since=state.paper_low_since, alarms_24h=state.alarms_recent)


class TerminalOut(BaseModel):
    id: str
    station_id: str
    serial: str | None
    status: str
    online: bool
    last_seen_at: dt.datetime | None
    software: str | None
    software_wanted: str | None
    config: int | None
    config_wanted: int | None
    backlog: int                   # unsent sales and advices, as the terminal's last heartbeat says
    backlog_oldest_s: int
    highest_seq: int | None        # the highest sale number received
    missing: int                   # sale numbers below it not received
    cert_expires_at: dt.datetime | None
    alarm: AlarmOut


class VersionCount(BaseModel):
    kind: str                      # software or config
    version: str
    online: int
    offline: int


class TerminalsOut(BaseModel):
    terminals: list[TerminalOut]
    online: int
    offline: int
    versions: list[VersionCount]
    can_change: bool               # accept and revoke: operators
    can_revoke: bool               # ... and the web application has the authority
    in_alarm: int                  # terminals with an alarm open (tamper or door)


class EventOut(BaseModel):
    id: int
    at: dt.datetime                # the terminal's time
    received_at: dt.datetime
    severity: str                  # info, warning, alarm
    code: str
    detail: str                    # the terminal's text: show it escaped


class EventsOut(BaseModel):
    terminal: str
    station_id: str
    timezone: str                  # the station's clock, for showing the times
    alarm: AlarmOut
    severity: str | None           # the filter asked for
    events: list[EventOut]         # newest first
    next_before: int | None        # more, older: ask again with before=this


def online(device: Device | devices.DeviceView, now: dt.datetime) -> bool:
    seen = device.last_seen_at
    return bool(device.online) and seen is not None and now - seen <= ONLINE_WITHIN


def _sequences(ctx: Ctx, ids: list[str]) -> dict[str, tuple[int, int]]:
    """device -> (highest sale number, distinct numbers received), over the index on (device, seq)."""
    if not ids:
        return {}
    rows = ctx.s.execute(select(Transaction.device_id, func.max(Transaction.seq),
                                func.count(func.distinct(Transaction.seq)))
                         .where(Transaction.device_id.in_(ids), Transaction.seq.is_not(None))
                         .group_by(Transaction.device_id)).all()
    return {device: (int(top or 0), int(count)) for device, top, count in rows}


def list_terminals(ctx: Ctx, station: str | None = None) -> TerminalsOut:
    need(ctx, "operator", "station")
    allowed = station_ids(ctx)
    if station:
        allowed = {station_for(ctx, station).id}
    views = [v for v in devices.list_devices(ctx.s) if allowed is None or v.station in allowed]
    seqs = _sequences(ctx, [v.id for v in views])
    alarms = device_alarms.alarm_states(ctx.s, [v.id for v in views], ctx.now)
    out, counts = [], Counter[tuple[str, str, bool]]()
    for v in views:
        top, received = seqs.get(v.id, (0, 0))
        up = online(v, ctx.now)
        out.append(TerminalOut(
            id=v.id, station_id=v.station, serial=v.serial, status=v.status, online=up,
            last_seen_at=v.last_seen_at, software=v.software_reported,
            software_wanted=None if v.software_desired == v.software_reported else v.software_desired,
            config=v.config_reported,
            config_wanted=None if v.config_desired == v.config_reported else v.config_desired,
            backlog=v.backlog, backlog_oldest_s=v.backlog_oldest_s, highest_seq=top or None,
            missing=top - received, cert_expires_at=v.cert_expires_at,
            alarm=AlarmOut.of(alarms.get(v.id, device_alarms.AlarmState()))))
        if v.status in ("pending", "active"):
            counts["software", v.software_reported or "-", up] += 1
            counts["config", "-" if v.config_reported is None else str(v.config_reported), up] += 1
    versions = [VersionCount(kind=kind, version=version, online=counts[kind, version, True],
                             offline=counts[kind, version, False])
                for kind, version in sorted({(k, ver) for k, ver, _ in counts})]
    live = [t for t in out if t.status in ("pending", "active")]
    up_count = sum(1 for t in live if t.online)
    operator = ctx.user.role == "operator"
    return TerminalsOut(terminals=out, online=up_count, offline=len(live) - up_count, versions=versions,
                        can_change=operator, can_revoke=operator and ctx.settings.tls_dir is not None,
                        in_alarm=sum(1 for t in out if t.alarm.tone == "alarm"))


def _terminal(ctx: Ctx, device_id: str) -> Device:
    row = ctx.s.get(Device, device_id)
    allowed = station_ids(ctx)
    if row is None or (allowed is not None and row.station_id not in allowed):
        raise NotFound("terminal")
    return row


def terminal(ctx: Ctx, device_id: str) -> TerminalOut:
    need(ctx, "operator", "station")
    row = _terminal(ctx, device_id)
    found = list_terminals(ctx, row.station_id).terminals
    return next(t for t in found if t.id == row.id)


def terminal_events(ctx: Ctx, device_id: str, *, severity: str | None = None, limit: int = EVENTS_PAGE,
                    before: int | None = None) -> EventsOut:
    """A terminal's events newest first, `limit` of them, older than event `before` (one of its own)."""
    need(ctx, "operator", "station")
    row = _terminal(ctx, device_id)
    if severity is not None and severity not in device_alarms.SEVERITIES:
        raise BadInput(ctx.t("network.bad_severity"))
    cursor = None
    if before is not None:
        cursor = device_alarms.event_position(ctx.s, row.id, before)
        if cursor is None:
            raise NotFound("event")
    limit = max(1, min(limit, 200))
    found = device_alarms.events(ctx.s, row.id, limit=limit + 1, before=cursor, severity=severity)
    shown = found[:limit]
    state = device_alarms.alarm_states(ctx.s, [row.id], ctx.now)[row.id]
    station = ctx.s.get(Station, row.station_id)
    zone = station.timezone if station is not None else "UTC"
    return EventsOut(terminal=row.id, station_id=row.station_id, timezone=zone,
                     alarm=AlarmOut.of(state), severity=severity, events=[_event(e) for e in shown],
                     next_before=shown[-1].id if len(found) > limit else None)


def _event(e: DeviceEvent) -> EventOut:
    return EventOut(id=e.id, at=e.at, received_at=e.received_at, severity=e.severity, code=e.code,
                    detail=e.detail)


def accept(ctx: Ctx, device_id: str) -> TerminalOut:
    """A pending terminal accepted: the registry then sends it its certificate and keys."""
    need(ctx, "operator")
    row = _terminal(ctx, device_id)
    audit(ctx.s, actor=ctx.actor, action="device.accept", subject=f"device:{row.id}", now=ctx.now,
          station=row.station_id, status=row.status)
    devices.accept(ctx.s, row.id)           # commits, with the audit
    return terminal(ctx, row.id)


def revoke(ctx: Ctx, device_id: str) -> TerminalOut:
    """Its certificate on the authority's CRL (the broker takes it on its next reload) and revoked."""
    need(ctx, "operator")
    row = _terminal(ctx, device_id)
    if ctx.settings.tls_dir is None:
        raise BadInput("revoking a terminal needs the fleet authority: start the back office with the "
                       "registry's --tls-dir, or use forecourt registry device revoke")
    authority = Authority.load(ctx.settings.tls_dir)
    audit(ctx.s, actor=ctx.actor, action="device.revoke", subject=f"device:{row.id}", now=ctx.now,
          station=row.station_id, status=row.status)
    devices.revoke(ctx.s, authority, row.id, ctx.now)       # commits, with the audit
    return terminal(ctx, row.id)


CtxApi = Annotated[Ctx, Depends(api_ctx)]


@router.get("/api/network/terminals", response_model=TerminalsOut, tags=["network"])
def api_terminals(ctx: CtxApi, station: str = "") -> TerminalsOut:
    return list_terminals(ctx, station or None)


@router.get("/api/network/terminals/{device_id}", response_model=TerminalOut, tags=["network"])
def api_terminal(device_id: str, ctx: CtxApi) -> TerminalOut:
    return terminal(ctx, device_id)


@router.get("/api/network/terminals/{device_id}/events", response_model=EventsOut, tags=["network"])
def api_terminal_events(device_id: str, ctx: CtxApi, severity: str = "",
                        limit: Annotated[int, Query(ge=1, le=200)] = EVENTS_PAGE,
                        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> EventsOut:
    return terminal_events(ctx, device_id, severity=severity or None, limit=limit, before=before)


@router.post("/api/network/terminals/{device_id}/accept", response_model=TerminalOut, tags=["network"])
def api_accept(device_id: str, ctx: CtxApi) -> TerminalOut:
    return accept(ctx, device_id)


@router.post("/api/network/terminals/{device_id}/revoke", response_model=TerminalOut, tags=["network"])
def api_revoke(device_id: str, ctx: CtxApi) -> TerminalOut:
    return revoke(ctx, device_id)
