"""The network's terminals as JSON, and the endpoint functions the terminals page renders: link state,
versions run and wanted, backlog, last seen; operators accept a pending terminal and revoke one.

Online: the broker says the terminal is connected (its status, or a heartbeat: registry.fleetops) and its
last heartbeat is at most ONLINE_WITHIN old. A terminal beats every minute; a registry that missed the last
will of a terminal whose link died would otherwise show it online for ever. Missing sales: the terminal's
sale numbers the registry has not received between 1 and the highest it has (as registry.reports.gaps),
counted for the terminals shown only. Revoking needs the fleet's authority (WebSettings.tls_dir): without
it, the API refuses and the page shows the button disabled, saying why.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import func, select

from registry import devices
from registry.fleet.admin import audit
from registry.models import Device, Transaction
from registry.pki import Authority
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput, NotFound
from registry.web.scope import station_for, station_ids

__all__ = ["ONLINE_WITHIN", "router"]

router = APIRouter()
ONLINE_WITHIN = dt.timedelta(minutes=3)     # three heartbeats


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
            missing=top - received, cert_expires_at=v.cert_expires_at))
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
                        can_change=operator, can_revoke=operator and ctx.settings.tls_dir is not None)


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


@router.post("/api/network/terminals/{device_id}/accept", response_model=TerminalOut, tags=["network"])
def api_accept(device_id: str, ctx: CtxApi) -> TerminalOut:
    return accept(ctx, device_id)


@router.post("/api/network/terminals/{device_id}/revoke", response_model=TerminalOut, tags=["network"])
def api_revoke(device_id: str, ctx: CtxApi) -> TerminalOut:
    return revoke(ctx, device_id)
