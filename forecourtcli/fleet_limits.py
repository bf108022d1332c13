"""`forecourt registry limit set|clear` and `window add|clear`: limits and weekly time windows of a card
or of every card of an account (registry.fleet.admin), audited with --actor."""

from __future__ import annotations

import argparse
import re
from typing import Any

from contracts.errors import ConfigError
from forecourtcli.fleet import command, decimal_units, group, ident, ops, session, shown

__all__ = ["add_limit_parsers", "parse_days", "parse_times"]

_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})", re.ASCII)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_days(text: str) -> int:
    """argparse type of weekdays: mon-fri, sat,sun, mon,wed-fri or all -> a bit mask (bit 0 Monday).

    >>> parse_days("mon-fri"), parse_days("sat,sun"), parse_days("all")
    (31, 96, 127)
    """
    mask = 0
    for item in text.lower().replace(" ", "").split(","):
        if item == "all":
            mask |= 127
            continue
        first, _, last = item.partition("-")
        last = last or first
        if first not in DAYS or last not in DAYS or DAYS.index(last) < DAYS.index(first):
            raise argparse.ArgumentTypeError("days must be like mon-fri, sat,sun or all")
        for day in range(DAYS.index(first), DAYS.index(last) + 1):
            mask |= 1 << day
    return mask


def parse_times(text: str) -> tuple[int, int]:
    """argparse type of a time window HH:MM-HH:MM (end 24:00 allowed; an end before the start runs over
    midnight) -> (start, end) minutes of the day.

    >>> parse_times("06:00-22:00"), parse_times("22:00-06:00"), parse_times("00:00-24:00")
    ((360, 1320), (1320, 360), (0, 1440))
    """
    minutes = []
    for part in text.split("-"):
        match = _TIME.fullmatch(part.strip())
        if match is None or int(match.group(2)) > 59 or int(match.group(1)) * 60 + int(match.group(2)) > 1440:
            raise argparse.ArgumentTypeError("times must be like 06:00-22:00")
        minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
    if len(minutes) != 2 or minutes[0] >= 1440:
        raise argparse.ArgumentTypeError("times must be like 06:00-22:00")
    return minutes[0], minutes[1]


def _scope(args: argparse.Namespace) -> tuple[str, int]:
    return ("card", args.card) if args.card is not None else ("account", args.account)


def cmd_limit_set(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    maximum = args.max
    if args.unit == "count":
        if maximum % 100:
            raise ConfigError("a count of sales is a whole number", key="--max")
        maximum //= 100
    scope, scope_id = _scope(args)
    with session(args.db) as s:
        admin.set_limit(s, scope, scope_id, args.period, args.unit, maximum, reason=args.reason, **ops(args))
    text = f"{maximum} sales" if args.unit == "count" else shown(args.unit, maximum)
    print(f"{scope} {scope_id}: at most {text} per {args.period}")
    return 0


def cmd_limit_clear(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    scope, scope_id = _scope(args)
    with session(args.db) as s:
        gone = admin.clear_limit(s, scope, scope_id, args.period, args.unit, reason=args.reason, **ops(args))
    print(f"{scope} {scope_id}: {args.period} {args.unit} limit " + ("removed" if gone else "was not set"))
    return 0


def cmd_window_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    scope, scope_id = _scope(args)
    with session(args.db) as s:
        w = admin.add_window(s, scope, scope_id, args.days, *args.times, **ops(args))
        print(f"{scope} {scope_id}: window {w.id} added")
    return 0


def cmd_window_clear(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    scope, scope_id = _scope(args)
    with session(args.db) as s:
        gone = admin.clear_windows(s, scope, scope_id, **ops(args))
    print(f"{scope} {scope_id}: {gone} windows removed; it may buy at any time its account allows")
    return 0


def scope_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--card", type=ident, default=None, help="a card's id")
    group.add_argument("--account", type=ident, default=None, help="an account's id (every card of it)")


def add_limit_parsers(sub: Any) -> None:
    from registry.fleet import admin

    g = group(sub, "limit", "limits of a card or an account: set, clear")
    for name, func, text in (("set", cmd_limit_set, "at most MAX per period"),
                             ("clear", cmd_limit_clear, "remove a limit")):
        p = command(g, name, text, func, reason=True)
        scope_options(p)
        p.add_argument("--period", choices=admin.PERIODS, required=True)
        p.add_argument("--unit", choices=admin.UNITS, required=True)
        if name == "set":
            p.add_argument("--max", type=decimal_units, required=True,
                           help="money 150.00, litres 60, or a count of sales")
    g = group(sub, "window", "when a card or an account's cards may buy: add, clear")
    p = command(g, "add", "a weekly window in the account's time zone", cmd_window_add)
    scope_options(p)
    p.add_argument("--days", type=parse_days, required=True, help="mon-fri, sat,sun, all")
    p.add_argument("--times", type=parse_times, required=True, help="06:00-22:00 (22:00-06:00 over midnight)")
    scope_options(command(g, "clear", "remove every window", cmd_window_clear))

