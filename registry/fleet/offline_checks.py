"""What an offline fleet sale did that the registry would not have allowed online: the terminal could not
ask, so the sale is booked (the fuel was taken) and these flags go with it for an operator."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.messages import parse_timestamp
from registry.fleet import rules, usage
from registry.models import Account, Card, OfflineLimit, TimeWindow

__all__ = ["CLASS_OF", "offline_excess"]

# the card class of a medium, as the terminal looks up its offline limit (firmware.programs.fleet.media)
CLASS_OF = {"chip": "fleet", "stripe": "fleet_stripe", "tag": "fleet_tag"}


def offline_excess(s: Session, card: Card, account: Account, sale: dict[str, Any],
                   now: dt.datetime) -> list[str]:
    """Flags: over_offline_limit (beyond its class's offline limit), over_limit (beyond what a limit of the
    card or account left), outside_time_window (at a time its windows forbid)."""
    flags = []
    volume, cents = sale["volume_cl"], sale["amount_cents"]
    offline = s.get(OfflineLimit, CLASS_OF.get(sale.get("medium", "chip"), "fleet"))
    if offline is None or volume > offline.volume_cl or cents > offline.amount_cents:
        flags.append("over_offline_limit")
    left = rules.remaining(usage.limit_views(s, card, account, now))
    if ((left.volume_cl is not None and volume > left.volume_cl)
            or (left.cents is not None and cents > left.cents) or left.sales_left == 0):
        flags.append("over_limit")
    windows = [rules.WindowView(w.scope, w.weekdays, w.start_minute, w.end_minute) for w in s.scalars(
        select(TimeWindow).where(((TimeWindow.scope == "card") & (TimeWindow.scope_id == card.id))
                                 | ((TimeWindow.scope == "account") & (TimeWindow.scope_id == account.id))))]
    made = rules.local_time(min(parse_timestamp(sale["finished_at"]), now), account.timezone)
    if not rules.in_windows(windows, made):
        flags.append("outside_time_window")
    return flags
