"""`forecourt registry sale void SALE_ID --reason TEXT`: undo what a stored sale booked (registry.voids):
its wallet debit, its usage and its loyalty points, once. Audited with --actor (default $USER)."""

from __future__ import annotations

import argparse
from typing import Any

from forecourtcli.fleet import command, group, ops, session

__all__ = ["add_parsers"]


def cmd_void(args: argparse.Namespace) -> int:
    from registry.voids import void_sale

    with session(args.db) as s:
        done = void_sale(s, args.sale_id, reason=args.reason, **ops(args))
    if done.again:
        print(f"sale {args.sale_id}: voided before; nothing more booked")
        return 0
    money = ", ".join(f"{m.amount:+d} on wallet {m.wallet_id}" for m in done.money) or "no wallet debit"
    taken = f"{done.points.amount:+d} points" if done.points is not None else "no points"
    print(f"sale {args.sale_id}: voided ({money}; {taken})")
    return 0


def add_parsers(sub: Any) -> None:
    g = group(sub, "sale", "a stored sale: void it (a return, a sale made in error)")
    p = command(g, "void", "undo its wallet debit, usage and loyalty points, once", cmd_void, reason=True,
                required=True)
    p.add_argument("sale_id", metavar="SALE_ID")
