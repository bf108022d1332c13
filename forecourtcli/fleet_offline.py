"""`forecourt registry offline-limit set|clear|list`: what one sale of a fleet card class may reach while
the registry is away (registry.fleet.stoplist); the terminals' configurations carry it within
`--stop-list-poll` seconds of a running registry."""

from __future__ import annotations

import argparse
from typing import Any

from forecourtcli.fleet import command, decimal_units, group, ops, session, shown

__all__ = ["add_parsers"]


def cmd_set(args: argparse.Namespace) -> int:
    from registry.fleet import stoplist

    with session(args.db) as s:
        stoplist.set_offline_limit(s, args.card_class, amount_cents=args.amount, volume_cl=args.litres,
                                   reason=args.reason, **ops(args))
    print(f"{args.card_class}: offline sales up to {shown('money', args.amount)} and "
          f"{shown('volume', args.litres)}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from registry.fleet import stoplist

    with session(args.db) as s:
        found = stoplist.clear_offline_limit(s, args.card_class, reason=args.reason, **ops(args))
    print(f"{args.card_class}: " + ("no offline sales any more" if found else "had no offline limit"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from registry.fleet import stoplist

    with session(args.db) as s:
        limits = stoplist.offline_limits(s)
    for name in stoplist.CLASSES:
        lim = limits.get(name)
        print(f"{name:<13} " + (f"{shown('money', lim['amount_cents'])}  {shown('volume', lim['volume_cl'])}"
                                if lim else "no offline sales"))
    return 0


def add_parsers(sub: Any) -> None:
    from registry.fleet.stoplist import CLASSES

    g = group(sub, "offline-limit", "what one fleet sale may reach while the registry is away, per card "
              "class")
    p = command(g, "set", "set a card class's offline limit (both bounds apply)", cmd_set, reason=True,
                required=True)
    p.add_argument("card_class", choices=CLASSES, help="fleet (chip), fleet_stripe or fleet_tag")
    p.add_argument("--amount", type=decimal_units, required=True, help="most money, e.g. 80.00")
    p.add_argument("--litres", type=decimal_units, required=True, help="most litres, e.g. 50")
    p = command(g, "clear", "no offline sales of a card class", cmd_clear, reason=True, required=True)
    p.add_argument("card_class", choices=CLASSES)
    command(g, "list", "the offline limit of each card class", cmd_list)
