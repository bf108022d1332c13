"""Station groups (a region, a brand) that wallets may be restricted to ("group:NAME" in a wallet's stations).
Each change is audited; nothing commits here (the caller does)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet.admin import audit, get
from registry.models import Station, StationGroupMember

__all__ = ["add_station", "groups", "remove_station"]

_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)     # no comma or colon: it sits in a wallet's spec


def _name(group: str) -> str:
    if not _GROUP.fullmatch(group):
        raise ConfigError("a group name is 1 to 64 letters, digits, '_', '.' or '-'", key="group")
    return group


def add_station(s: Session, group: str, station_id: str, *, actor: str, now: dt.datetime) -> bool:
    """Put a station in a group (made by its first station); False when it was in it already."""
    get(s, Station, station_id, "station")
    if s.get(StationGroupMember, (_name(group), station_id)) is not None:
        return False
    s.add(StationGroupMember(group=group, station_id=station_id))
    s.flush()
    audit(s, actor=actor, action="group.add", subject=f"group:{group}", now=now, station=station_id)
    return True


def remove_station(s: Session, group: str, station_id: str, *, actor: str, now: dt.datetime) -> bool:
    """Take a station out of a group; False when it was not in it. Wallets naming the group keep it."""
    member = s.get(StationGroupMember, (_name(group), station_id))
    if member is None:
        return False
    s.delete(member)
    s.flush()
    audit(s, actor=actor, action="group.remove", subject=f"group:{group}", now=now, station=station_id)
    return True


def groups(s: Session) -> dict[str, list[str]]:
    """Every group and its stations, by name."""
    found: dict[str, list[str]] = {}
    for member in s.scalars(select(StationGroupMember).order_by(StationGroupMember.group,
                                                                StationGroupMember.station_id)):
        found.setdefault(member.group, []).append(member.station_id)
    return found
