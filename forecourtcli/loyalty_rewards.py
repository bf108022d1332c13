"""`forecourt registry reward|orders|conversion|settlement ...`: the rewards catalogue and stock, the weekly
order list and returns, the points conversion table, and station settlements (registry.loyalty.rewards,
convert, settlement). Every change is audited with --actor (default $USER).

Values per point are cents with up to 3 decimals (0.5 = half a cent a point); dates are YYYY-MM-DD (UTC).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

from forecourtcli.fleet import actor, command, group, ident, now, ops, session, table

__all__ = ["add_parsers", "milli_cents"]

_MILLI = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,3}))?", re.ASCII)
_BAND = re.compile(r"([0-9]{1,10}):(.+)", re.ASCII)


def milli_cents(text: str) -> int:
    """argparse type of a value per point in cents with up to 3 decimals, in thousandths of a cent.

    >>> milli_cents("0.5"), milli_cents("2"), milli_cents("1.333")
    (500, 2000, 1333)
    """
    match = _MILLI.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"a value per point is cents with up to 3 decimals, not {text[:20]!r}")
    return int(match[1]) * 1000 + int((match[2] or "0").ljust(3, "0"))


def band(text: str) -> tuple[int, int]:
    """argparse type of a conversion band MIN_POINTS:CENTS_PER_POINT, e.g. 1000:1.5."""
    match = _BAND.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"a band is MIN_POINTS:CENTS_PER_POINT (1000:1.5), not {text[:20]!r}")
    return int(match[1]), milli_cents(match[2])


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, not {text[:20]!r}") from exc


def _per_point(value: int) -> str:
    return f"{value // 1000}.{value % 1000:03d}"


def cmd_reward_add(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        reward = rewards.add_reward(s, args.name, args.points, **ops(args))
        said = f"reward {reward.id}: {reward.name}, {reward.points} points"
    print(said)
    return 0


def cmd_reward_price(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        reward = rewards.set_price(s, args.reward, args.points, **ops(args))
        said = f"reward {reward.id}: {reward.points} points"
    print(said)
    return 0


def cmd_reward_withdraw(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        rewards.withdraw(s, args.reward, reason=args.reason, **ops(args))
    print(f"reward {args.reward}: withdrawn")
    return 0


def cmd_reward_stock(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        if args.set is not None:
            row = rewards.set_stock(s, args.reward, args.station, args.set, **ops(args))
        else:
            row = rewards.adjust_stock(s, args.reward, args.station, args.add, reason=args.reason,
                                       **ops(args))
        said = f"reward {args.reward} at {args.station}: {row.quantity} in stock"
    print(said)
    return 0


def cmd_reward_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry.models import Reward, RewardStock

    with session(args.db) as s:
        stock: dict[int, list[str]] = {}
        for row in s.scalars(select(RewardStock).order_by(RewardStock.station_id)):
            stock.setdefault(row.reward_id, []).append(f"{row.station_id}={row.quantity}")
        rows = [[str(r.id), r.name, str(r.points), r.status, " ".join(stock.get(r.id, [])) or "-"]
                for r in s.scalars(select(Reward).order_by(Reward.id))]
    print(table(["ID", "NAME", "POINTS", "STATUS", "STOCK"], rows), end="")
    return 0


def cmd_orders_week(args: argparse.Namespace) -> int:
    from registry.fleet.admin import audit
    from registry.loyalty import rewards

    with session(args.db) as s:
        lines = rewards.consolidate_week(s, args.week, now())
        audit(s, actor=actor(args), action="reward.week", subject=f"week:{args.week}", now=now(),
              lines=len(lines), orders=sum(x.quantity for x in lines))
        rows = [[x.station_id, str(x.reward_id), x.reward, str(x.quantity), ",".join(map(str, x.orders))]
                for x in lines]
    print(f"orders of {args.week}")
    print(table(["STATION", "REWARD", "NAME", "QUANTITY", "ORDERS"], rows), end="")
    return 0


def cmd_orders_list(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        rows = [[str(o.id), o.created_at.isoformat(sep=" ", timespec="minutes"), o.station_id,
                 str(o.reward_id), str(o.account_id), o.status, o.batch or "-", o.attendant_id or "-"]
                for o in rewards.orders(s, status=args.status, station=args.station, batch=args.batch)]
    print(table(["ID", "AT", "STATION", "REWARD", "ACCOUNT", "STATUS", "LIST", "ATTENDANT"], rows), end="")
    return 0


def cmd_orders_return(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        order = rewards.return_order(s, args.order, now(), actor(args))
        said = f"order {order.id}: {order.status}"
    print(said)
    return 0


def cmd_orders_deliver(args: argparse.Namespace) -> int:
    from registry.loyalty import rewards

    with session(args.db) as s:
        order = rewards.deliver(s, args.order, now(), actor(args))
        said = f"order {order.id}: {order.status}"
    print(said)
    return 0


def cmd_conversion_set(args: argparse.Namespace) -> int:
    from registry.loyalty import convert

    with session(args.db) as s:
        bands = convert.set_table(s, args.band, **ops(args))
    print(f"conversion table: {len(bands)} bands")
    return 0


def cmd_conversion_list(args: argparse.Namespace) -> int:
    from registry.loyalty import convert

    with session(args.db) as s:
        rows = [[str(b.min_points), _per_point(b.milli_cents)] for b in convert.table(s)]
    print(table(["FROM POINTS", "CENTS/POINT"], rows), end="")
    return 0


def cmd_settlement_value(args: argparse.Namespace) -> int:
    from registry.loyalty import settlement

    with session(args.db) as s:
        settlement.set_value(s, args.station, args.group, args.valid_from, args.value, **ops(args))
    print(f"station {args.station} {args.group} from {args.valid_from.isoformat()}: "
          f"{_per_point(args.value)} cents a point")
    return 0


def cmd_settlement_values(args: argparse.Namespace) -> int:
    from registry.loyalty import settlement

    with session(args.db) as s:
        rows = [[v.station_id, v.product_group, v.valid_from.isoformat(), _per_point(v.milli_cents)]
                for v in settlement.values(s, args.station)]
    print(table(["STATION", "GROUP", "FROM", "CENTS/POINT"], rows), end="")
    return 0


def cmd_settlement_run(args: argparse.Namespace) -> int:
    from registry.loyalty import settlement

    with session(args.db) as s:
        rows = settlement.settle(s, args.station, args.start, args.end, actor(args), now())
        text = settlement.printout(rows)
    print(text, end="")
    return 0


def cmd_settlement_show(args: argparse.Namespace) -> int:
    from contracts.errors import ConfigError
    from registry.loyalty import settlement

    with session(args.db) as s:
        rows = settlement.settled(s, args.station, args.start, args.end)
        if not rows:
            raise ConfigError("no settlement for that station and period: run it first", station=args.station)
        text = settlement.printout(rows)
    print(text, end="")
    return 0


def _period(p: Any) -> None:
    p.add_argument("--station", required=True)
    p.add_argument("--from", dest="start", type=_date, required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", type=_date, required=True, help="last day, inclusive")


def add_parsers(sub: Any) -> None:
    g = group(sub, "reward", "the rewards catalogue: add, price, list, stock, withdraw")
    p = command(g, "add", "a reward redeemed for points", cmd_reward_add)
    p.add_argument("--name", required=True)
    p.add_argument("--points", type=int, required=True, help="its price in points")
    p = command(g, "price", "a new price in points (orders taken keep theirs)", cmd_reward_price)
    p.add_argument("--reward", type=ident, required=True)
    p.add_argument("--points", type=int, required=True)
    command(g, "list", "every reward with its stock per station", cmd_reward_list)
    p = command(g, "stock", "a station's stock of a reward: --set after a count, --add goods in (+) or "
                "out (-)", cmd_reward_stock, reason=True)
    p.add_argument("--reward", type=ident, required=True)
    p.add_argument("--station", required=True)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--set", type=int)
    how.add_argument("--add", type=int)
    p = command(g, "withdraw", "no more redemptions of a reward", cmd_reward_withdraw, reason=True)
    p.add_argument("--reward", type=ident, required=True)

    g = group(sub, "orders", "ordered rewards: week, list, deliver, return")
    p = command(g, "week", "list the orders pending at the end of an ISO week, once (asked again: the same)",
                cmd_orders_week)
    p.add_argument("--week", required=True, help="e.g. W2026-49")
    p = command(g, "list", "reward orders", cmd_orders_list)
    p.add_argument("--status", choices=("handed_over", "pending", "listed", "delivered", "returned"))
    p.add_argument("--station")
    p.add_argument("--batch", help="a weekly list, e.g. W2026-49")
    p = command(g, "deliver", "a listed order reached the customer", cmd_orders_deliver)
    p.add_argument("--order", type=ident, required=True)
    p = command(g, "return", "give an order's points back (and its stock, goods at the station)",
                cmd_orders_return)
    p.add_argument("--order", type=ident, required=True)

    g = group(sub, "conversion", "the table turning points into wallet credit: set, list")
    p = command(g, "set", "replace the table: from MIN_POINTS up, each point is worth CENTS",
                cmd_conversion_set)
    p.add_argument("--band", type=band, action="append", required=True, help="MIN_POINTS:CENTS_PER_POINT")
    command(g, "list", "the conversion table", cmd_conversion_list)

    g = group(sub, "settlement", "what stations are paid for the points they grant: value, values, run, show")
    p = command(g, "value", "a station's value per point of a product group from a date",
                cmd_settlement_value)
    p.add_argument("--station", required=True)
    p.add_argument("--group", required=True, help="a product group (fuel, shop...) or * for the others")
    p.add_argument("--from", dest="valid_from", type=_date, required=True)
    p.add_argument("--cents", dest="value", type=milli_cents, required=True, help="cents a point, e.g. 0.5")
    p = command(g, "values", "station point values", cmd_settlement_values)
    p.add_argument("--station")
    p = command(g, "run", "settle a station's period once and print it (asked again: as written)",
                cmd_settlement_run)
    _period(p)
    p = command(g, "show", "re-print a settled period as written", cmd_settlement_show)
    _period(p)
