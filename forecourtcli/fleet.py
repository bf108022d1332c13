"""`forecourt registry customer|account|vehicle|driver|wallet|group|statement|ledger ...`: fleet
accounts from the registry's command line (registry.fleet.admin, statements, ledger); `card ...` is in
forecourtcli.fleet_cards, `limit ...` and `window ...` in forecourtcli.fleet_limits. Every change is
audited with --actor (default $USER) and, where asked, --reason.

Amounts are decimals in the wallet's or limit's unit: money with up to 2 decimals (12.34 = 1234 cents),
litres with up to 2 decimals (40.5 = 4050 cl); a count of sales is a whole number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["actor", "add_parsers", "command", "common", "decimal_units", "group", "ident", "now", "ops",
           "session", "shown", "table"]

EPILOG = ("exit codes: 0 ok, 1 run failed (a change the data does not allow: not enough in a wallet, a card "
          "status move), 2 usage or configuration error (an unknown id, a bad value), 3 missing component")
DB_HELP = "SQLAlchemy URL, e.g. sqlite:///registry.db"
_DECIMAL = re.compile(r"(-?)([0-9]{1,10})(?:\.([0-9]{1,2}))?", re.ASCII)


def decimal_units(text: str) -> int:
    """argparse type of an amount with up to 2 decimals, in hundredths: "12.34" -> 1234, "-5" -> -500.

    >>> decimal_units("12.34"), decimal_units("40.5"), decimal_units("-5")
    (1234, 4050, -500)
    """
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"amount must be a number with up to 2 decimals, not {text[:20]!r}")
    sign, whole, part = match.groups()
    value = int(whole) * 100 + int((part or "0").ljust(2, "0"))
    return -value if sign else value


def ident(text: str) -> int:
    """argparse type of a row id: 1 .. 2**31 - 1 (an INTEGER column on PostgreSQL).

    >>> ident("42")
    42
    """
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) < 2**31:
        raise argparse.ArgumentTypeError(f"an id is a whole number from 1, not {text[:20]!r}")
    return int(text)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, not {text[:20]!r}") from exc


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def actor(args: argparse.Namespace) -> str:
    return str(args.actor or os.environ.get("USER") or getpass.getuser())


@contextmanager
def session(url: str) -> Iterator[Session]:
    """A session on the registry database; committed when the block ends without an error."""
    from registry.db import database_url, open_database

    database_url(url, key="--db")
    engine, sessions = open_database(url)
    try:
        with sessions() as s:
            yield s
            s.commit()
    finally:
        engine.dispose()


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in [header, *rows])


def ops(args: argparse.Namespace) -> dict[str, Any]:
    return {"actor": actor(args), "now": now()}


def cmd_customer_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        c = admin.create_customer(s, args.name, kind=args.kind, tax_id=args.tax_id, **ops(args))
        print(f"customer {c.id}: {c.name} ({c.kind})")
    return 0


def cmd_customer_list(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from registry.models import Account, Customer

    with session(args.db) as s:
        per = select(Account.customer_id, func.count()).group_by(Account.customer_id)
        counts = dict(s.execute(per).all())
        rows = [[str(c.id), c.name, c.kind, c.tax_id or "-", str(counts.get(c.id, 0))]
                for c in s.scalars(select(Customer).order_by(Customer.id))]
    print(table(["ID", "NAME", "KIND", "TAX ID", "ACCOUNTS"], rows), end="")
    return 0


def cmd_account_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        a = admin.create_account(s, args.customer, args.name, prompts=args.prompts, timezone=args.timezone,
                                 **ops(args))
        print(f"account {a.id}: {a.name}, time zone {a.timezone}, prompts: {a.prompts or 'none'}")
    return 0


def cmd_account_show(args: argparse.Namespace) -> int:
    from registry.fleet.statements import account_summary, summary_text

    with session(args.db) as s:
        print(summary_text(account_summary(s, args.account, now())), end="")
    return 0


def _close(what: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from registry.fleet import closing

        with session(args.db) as s:
            if what == "account":
                cards = closing.close_account(s, args.id, reason=args.reason, **ops(args))
                print(f"account {args.id}: closed, its wallets closed, {cards} cards withdrawn")
            else:
                closing.close_wallet(s, args.id, reason=args.reason, **ops(args))
                print(f"wallet {args.id}: closed")
        return 0
    return cmd


def cmd_vehicle_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        v = admin.add_vehicle(s, args.account, args.number, **ops(args))
        print(f"vehicle {v.id}: {v.number}")
    return 0


def cmd_driver_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        d = admin.add_driver(s, args.account, args.code, name=args.name, **ops(args))
        print(f"driver {d.id}: {d.code}")
    return 0


def cmd_wallet_add(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        w = admin.add_wallet(s, args.account, unit=args.unit, mode=args.mode, credit_limit=args.credit,
                             products=args.products, stations=args.stations, expires_on=args.expires,
                             priority=args.priority, name=args.name, **ops(args))
        print(f"wallet {w.id}: {w.unit}, {w.mode}, priority {w.priority}")
    return 0


def shown(unit: str, value: int) -> str:
    from registry.fleet.statements import money

    return money(value) + (" L" if unit == "volume" else "")


def _money_move(what: Callable[..., Any], label: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from registry.models import Wallet

        extra = {"key": args.key} if getattr(args, "key", None) else {}
        with session(args.db) as s:
            move = what(s, args.wallet, args.amount, reason=args.reason, **extra, **ops(args))
            wallet = s.get(Wallet, args.wallet)
            unit = wallet.unit if wallet is not None else "money"
            said = (f"wallet {args.wallet}: {label} {shown(unit, move.amount)}, balance "
                    f"{shown(unit, move.balance_after)} (movement {move.id})")
        print(said)                  # once committed: a failed commit never reads as booked
        return 0
    return cmd


def cmd_wallet_transfer(args: argparse.Namespace) -> int:
    from registry.fleet import admin
    from registry.models import Wallet

    with session(args.db) as s:
        out, into = admin.transfer(s, args.source, args.target, args.amount, reason=args.reason, **ops(args))
        wallet = s.get(Wallet, args.source)
        unit = wallet.unit if wallet is not None else "money"
        said = (f"wallet {args.source} -> wallet {args.target}: {shown(unit, into.amount)}; balances "
                f"{shown(unit, out.balance_after)} and {shown(unit, into.balance_after)}")
    print(said)
    return 0


def cmd_wallet_order(args: argparse.Namespace) -> int:
    from registry.fleet import admin

    with session(args.db) as s:
        order = admin.set_wallet_order(s, args.account, args.wallets, **ops(args))
        print(f"account {args.account} pays from wallets " + ", ".join(str(w.id) for w in order))
    return 0


def _group_move(add: bool) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from registry.fleet import groups

        with session(args.db) as s:
            what = groups.add_station if add else groups.remove_station
            changed = what(s, args.group, args.station, **ops(args))
        verb = ("added to" if add else "removed from") if changed else ("already in" if add else "not in")
        print(f"station {args.station} {verb} group {args.group}")
        return 0
    return cmd


def cmd_group_list(args: argparse.Namespace) -> int:
    from registry.fleet import groups

    with session(args.db) as s:
        found = groups.groups(s)
    print(table(["GROUP", "STATIONS"], [[g, ",".join(stations)] for g, stations in found.items()]), end="")
    return 0


def cmd_statement(args: argparse.Namespace) -> int:
    from registry.fleet.statements import statement, statement_csv, statement_text

    with session(args.db) as s:
        st = statement(s, args.customer, args.start, args.end)
    print(statement_csv(st) if args.csv else statement_text(st), end="")
    return 0


def cmd_ledger_check(args: argparse.Namespace) -> int:
    from registry.fleet import ledger

    with session(args.db) as s:
        wrong = ledger.check(s)
    for wallet_id, balance, total in wrong:
        print(f"wallet {wallet_id}: balance {balance} but its movements sum to {total}")
    print("ledger sound: every balance is the sum of its movements" if not wrong
          else f"{len(wrong)} wallets do not match their movements")
    return 1 if wrong else 0


def common(p: argparse.ArgumentParser, *, reason: bool = False, required: bool = False) -> None:
    """--db, --actor and (for changes that say why) --reason."""
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--actor", default=None, help="who makes the change, for the audit (default: $USER)")
    if reason:
        p.add_argument("--reason", required=required, default="", help="why, for the audit"
                       + (" (required)" if required else ""))


def group(sub: Any, name: str, text: str) -> Any:
    return sub.add_parser(name, help=text, epilog=EPILOG).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND")


def command(sub: Any, name: str, text: str, func: Callable[[argparse.Namespace], int], **opts: bool) -> Any:
    p = sub.add_parser(name, help=text, epilog=EPILOG)
    common(p, **opts)
    p.set_defaults(func=func)
    return p


def add_parsers(sub: Any) -> None:
    from forecourtcli.fleet_cards import add_card_parsers
    from forecourtcli.fleet_limits import add_limit_parsers
    from registry.fleet import admin

    g = group(sub, "customer", "fleet customers: add, list")
    p = command(g, "add", "a company or a person the network issues cards to", cmd_customer_add)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", choices=admin.KINDS, default="company")
    p.add_argument("--tax-id", default="")
    command(g, "list", "every customer", cmd_customer_list)

    g = group(sub, "account", "fleet accounts: add, show (wallets, limits used and remaining, cards), close")
    p = command(g, "add", "an account of a customer", cmd_account_add)
    p.add_argument("--customer", type=ident, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--prompts", default="", help="asked at the pump: odometer,vehicle,driver_id (any subset)")
    p.add_argument("--timezone", default="UTC", help="IANA zone its periods and windows count in")
    p = command(g, "show", "wallets with balance and available, every limit with used and remaining",
             cmd_account_show)
    p.add_argument("account", metavar="ID", type=ident)
    p = command(g, "close", "close for good: its wallets (each empty) and withdraw its cards",
                _close("account"), reason=True, required=True)
    p.add_argument("id", metavar="ID", type=ident)

    p = command(group(sub, "vehicle", "an account's vehicles"), "add", "a vehicle of an account",
                cmd_vehicle_add)
    p.add_argument("--account", type=ident, required=True)
    p.add_argument("--number", required=True, help="registration or fleet number, as keyed in at the pump")
    p = command(group(sub, "driver", "an account's drivers"), "add", "a driver of an account", cmd_driver_add)
    p.add_argument("--account", type=ident, required=True)
    p.add_argument("--code", required=True, help="the driver id keyed in at the pump (digits)")
    p.add_argument("--name", default="")

    g = group(sub, "wallet", "wallets: add, topup, correct, transfer, order, close")
    p = command(g, "add", "a money or litre wallet of an account", cmd_wallet_add)
    p.add_argument("--account", type=ident, required=True)
    p.add_argument("--unit", choices=admin.WALLET_UNITS, required=True)
    p.add_argument("--mode", choices=admin.MODES, default="prepaid")
    p.add_argument("--credit", type=decimal_units, default=0, help="post-paid credit line, in its unit")
    p.add_argument("--products", default="", help="3-digit codes, ranges 001-099, product codes; '' any")
    p.add_argument("--stations", default="", help="station ids and group:NAME; '' any")
    p.add_argument("--expires", type=_date, default=None, help="last day it may pay, YYYY-MM-DD")
    p.add_argument("--priority", type=int, default=None, help="lower pays first (default: after the others)")
    p.add_argument("--name", default="")
    for name, what, label, text in (("topup", admin.topup, "topped up", "credit a wallet"),
                                    ("correct", admin.correct, "corrected by", "a signed correction")):
        p = command(g, name, text, _money_move(what, label), reason=True, required=True)
        p.add_argument("wallet", metavar="ID", type=ident)
        p.add_argument("--amount", type=decimal_units, required=True, help="in the wallet's unit: 12.34")
        if name == "topup":
            p.add_argument("--key", required=True, help="the payment's or order's reference: the same "
                           "top-up given twice (a retry) is booked once")
    p = command(g, "transfer", "move an amount between two wallets of one unit", cmd_wallet_transfer,
             reason=True, required=True)
    p.add_argument("--from", dest="source", type=ident, required=True)
    p.add_argument("--to", dest="target", type=ident, required=True)
    p.add_argument("--amount", type=decimal_units, required=True)
    p = command(g, "close", "close an empty wallet for good", _close("wallet"), reason=True, required=True)
    p.add_argument("id", metavar="ID", type=ident)
    p = command(g, "order", "the order wallets pay in", cmd_wallet_order)
    p.add_argument("--account", type=ident, required=True)
    p.add_argument("wallets", metavar="WALLET", type=ident, nargs="+", help="wallet ids, first pays first")

    g = group(sub, "group", "station groups wallets may be restricted to (group:NAME): add, remove, list")
    for name, add, text in (("add", True, "put a station in a group"), ("remove", False, "take it out")):
        p = command(g, name, text, _group_move(add))
        p.add_argument("group", metavar="NAME")
        p.add_argument("--station", required=True)
    command(g, "list", "every group and its stations", cmd_group_list)

    p = command(sub, "statement", "a customer's fleet sales, per card and per vehicle", cmd_statement)
    p.add_argument("--customer", type=ident, required=True)
    p.add_argument("--from", dest="start", type=_date, required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", type=_date, required=True, help="last day, YYYY-MM-DD")
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    command(group(sub, "ledger", "the wallets' ledger"), "check", "every balance is the sum of its movements",
         cmd_ledger_check)
    add_limit_parsers(sub)
    add_card_parsers(sub)
