"""What "today" is for a user: reports and statements count local days (a station's, an account's time
zone), so a default period ends on the latest local date among the user's stations or accounts, not on the
UTC date (at 22:30 UTC a station in Moscow is already in tomorrow)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from registry.fleet_models import Account
from registry.models import Station
from registry.web.deps import Ctx
from registry.web.scope import station_ids

__all__ = ["accounts_today", "local_today", "stations_today"]


def local_today(now: dt.datetime, zones: Iterable[str]) -> dt.date:
    """The latest local date among `zones` at `now` (naive UTC); the UTC date when there is none.

    >>> now = dt.datetime(2026, 11, 30, 22, 30)
    >>> local_today(now, ["Europe/Moscow", "UTC"]), local_today(now, [])
    (datetime.date(2026, 12, 1), datetime.date(2026, 11, 30))
    """
    dates = []
    for zone in set(zones):
        try:
            dates.append(now.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).date())
        except (ZoneInfoNotFoundError, ValueError):          # a name no zone database knows: UTC
            dates.append(now.date())
    return max(dates, default=now.date())


def stations_today(ctx: Ctx) -> dt.date:
    allowed = station_ids(ctx)
    q = select(Station.timezone).distinct()
    if allowed is not None:
        q = q.where(Station.id.in_(allowed or {""}))
    return local_today(ctx.now, list(ctx.s.scalars(q)))


def accounts_today(ctx: Ctx, customer_id: int) -> dt.date:
    zones = ctx.s.scalars(select(Account.timezone).where(Account.customer_id == customer_id).distinct())
    return local_today(ctx.now, list(zones))
