"""`forecourt registry prepaid issue|topup|refund|reverse|show` and `forecourt registry topup-bonus
add|list|end` (registry.prepaid, registry.prepaid_bonus): prepaid and gift cards sold at a station's till
and run by the issuer's back office. Audited with --actor (default $USER).

A card is named by its id (--card), its account (--account) or its number read from standard input
(--number -, with --state-dir: the registry's card-token keys), never from the command line. Amounts are
decimals with up to 2 places (50 = 50.00). A credit is `[NAME=]PRODUCTS[@STATIONS]`: products as a
wallet's ("group:fuel", "group:shop", codes; "any" for every product), stations ids or group:NAME.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError
from forecourtcli.fleet import command, decimal_units, group, ident, ops, session, table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.prepaid import Credit

__all__ = ["add_parsers", "parse_credit"]


def parse_credit(text: str) -> Credit:
    """argparse type of --credit: [NAME=]PRODUCTS[@STATIONS].

    >>> parse_credit("fuel=group:fuel@group:north")
    Credit(products='group:fuel', stations='group:north', name='fuel')
    >>> parse_credit("any")
    Credit(products='', stations='', name='')
    """
    from registry.prepaid import Credit

    name, _, rest = text.rpartition("=") if "=" in text.split("@")[0] else ("", "", text)
    products, _, stations = rest.partition("@")
    products = "" if products.strip() == "any" else products.strip()
    return Credit(products=products, stations=stations.strip(), name=name.strip())


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, not {text[:20]!r}") from exc


def _stdin_only(text: str) -> str:
    if text != "-":
        raise argparse.ArgumentTypeError("card numbers are read from standard input: give --number -")
    return text


def _who(s: Session, args: argparse.Namespace) -> dict[str, Any]:
    """card_id/account_id from --card, --account or --number - (its token)."""
    if getattr(args, "number", None):
        from sqlalchemy import select

        from forecourtcli.fleet_cards import _keys, _secrets
        from registry.fleet.cards import parse_number
        from registry.models import Card

        number, _ = _secrets(False)
        keys = _keys(args)
        card = None
        for medium in ("chip", "tag"):                # a PAN, or a tag's UID
            try:
                card = s.scalar(select(Card.id).where(Card.token == keys.token(parse_number(number, medium))))
            except ConfigError:
                continue
            if card is not None:
                break
        if card is None:
            raise ConfigError("no card has that number", key="--number")
        return {"card_id": card, "account_id": None}
    return {"card_id": args.card, "account_id": args.account}


def cmd_issue(args: argparse.Namespace) -> int:
    from forecourtcli.fleet_cards import _keys, _secrets
    from registry import prepaid

    keys = _keys(args)
    number, pin = _secrets(args.pin)
    with session(args.db) as s:
        done = prepaid.issue(s, keys, kind=args.kind, number=number, medium=args.medium, expiry=args.expiry,
                             pin=pin, credits=tuple(args.credit or [parse_credit("any")]),
                             expires_on=args.expires, customer_id=args.customer, name=args.name,
                             timezone=args.timezone, **ops(args))
        lines = [f"{args.kind} card {done.card.id}: {done.card.masked}, account {done.account_id}, credits "
                 + ", ".join(str(w) for w in done.wallet_ids)]
        if args.amount:
            if not args.key:
                raise ConfigError("an amount paid needs the payment's reference: --key", key="--key")
            got = prepaid.topup(s, args.amount, key=args.key, account_id=done.account_id,
                                wallet_id=done.wallet_ids[0], reason=args.reason, **ops(args))
            lines.append(_topped(got))
    print("\n".join(lines))                 # once committed
    return 0


def _money(cents: int) -> str:
    from registry.fleet.statements import money

    return money(cents)


def _topped(got: Any) -> str:
    bonus = got.bonus.amount if got.bonus is not None else 0
    last = got.bonus or got.paid
    again = " (booked before: nothing new)" if got.again else ""
    return (f"credit {got.paid.wallet_id}: paid {_money(got.paid.amount)}, bonus {_money(bonus)}, balance "
            f"{_money(last.balance_after)}{again}")


def cmd_topup(args: argparse.Namespace) -> int:
    from registry import prepaid

    with session(args.db) as s:
        got = prepaid.topup(s, args.amount, key=args.key, wallet_id=args.wallet, reason=args.reason,
                            **_who(s, args), **ops(args))
        said = _topped(got)
    print(said)
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    from registry import prepaid

    with session(args.db) as s:
        done = prepaid.refund(s, key=args.key, reason=args.reason, **_who(s, args), **ops(args))
        again = " (booked before: nothing new)" if done.again else ""
        said = f"pay out {_money(done.cents)} in cash{again}"
    print(said)
    return 0


def cmd_reverse(args: argparse.Namespace) -> int:
    from registry import prepaid

    with session(args.db) as s:
        moves = prepaid.reverse_topup(s, args.key, reason=args.reason, **ops(args))
        said = f"top-up {args.key} reversed: {_money(-sum(m.amount for m in moves))} taken back"
    print(said)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry import prepaid
    from registry.models import Card

    with session(args.db) as s:
        account = prepaid.account_for(s, **_who(s, args))
        cards = s.scalars(select(Card).where(Card.account_id == account.id).order_by(Card.id)).all()
        views = prepaid.credits(s, account, ops(args)["now"])
        head = (f"{account.kind} account {account.id}: {account.name}, {account.status}; cards "
                + ", ".join(f"{c.id} {c.masked} {c.status}" for c in cards) + "\n")
        rows = [[str(v.wallet_id), v.name or "-", v.products or "any", v.stations or "any",
                 str(v.expires_on or "-"), v.status, _money(v.balance), _money(v.available),
                 _money(v.split.refundable if account.kind == "prepaid" else 0)] for v in views]
    print(head + table(["CREDIT", "NAME", "PRODUCTS", "STATIONS", "LAST DAY", "STATUS", "BALANCE",
                        "AVAILABLE", "REFUNDABLE"], rows), end="")
    return 0


def cmd_bonus_add(args: argparse.Namespace) -> int:
    from registry.prepaid_bonus import add_bonus

    with session(args.db) as s:
        row = add_bonus(s, args.kind, min_cents=args.min, bonus_pct=args.pct, bonus_cents=args.amount,
                        starts_on=args.start, ends_on=args.end, **ops(args))
        said = f"top-up bonus {row.id}: {args.kind}, from {_money(row.min_cents)} paid"
    print(said)
    return 0


def cmd_bonus_list(args: argparse.Namespace) -> int:
    from registry.prepaid_bonus import list_bonuses

    with session(args.db) as s:
        rows = [[str(b.id), b.account_kind, _money(b.min_cents), f"{b.bonus_pct}%", _money(b.bonus_cents),
                 str(b.starts_on or "-"), str(b.ends_on or "-")] for b in list_bonuses(s, day=args.on)]
    print(table(["ID", "KIND", "FROM PAID", "PERCENT", "AMOUNT", "FIRST DAY", "LAST DAY"], rows), end="")
    return 0


def cmd_bonus_end(args: argparse.Namespace) -> int:
    from registry.prepaid_bonus import end_bonus

    with session(args.db) as s:
        row = end_bonus(s, args.id, last_day=args.on, reason=args.reason, **ops(args))
        said = f"top-up bonus {row.id}: last day {row.ends_on}"
    print(said)
    return 0


def _target(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--card", type=ident, default=None, help="the card's id")
    which.add_argument("--account", type=ident, default=None, help="the card's account id")
    which.add_argument("--number", type=_stdin_only, default=None,
                       help="'-': the card number from standard input (needs --state-dir)")
    _keys_options(p)


def _keys_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=".", help="the registry's state directory (its card-token keys)")
    p.add_argument("--kek", default=None, help="key-encryption key file (default: STATE_DIR/kek.hex)")


def add_parsers(sub: Any) -> None:
    from registry.fleet.cards import MEDIA
    from registry.prepaid_bonus import KINDS

    g = group(sub, "prepaid", "prepaid and gift cards: issue, topup, refund, reverse, show")
    p = command(g, "issue", "sell a card: its account, credits and the card (number and PIN on stdin)",
                cmd_issue, reason=True)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--number", type=_stdin_only, required=True, help="'-': read it from standard input")
    p.add_argument("--pin", action="store_true", help="a PIN follows the number on standard input")
    p.add_argument("--medium", choices=MEDIA, default="chip")
    p.add_argument("--expiry", required=True, help="the card's expiry, YYMM")
    p.add_argument("--credit", type=parse_credit, action="append",
                   help="[NAME=]PRODUCTS[@STATIONS], e.g. fuel=group:fuel; repeat for several (default any)")
    p.add_argument("--expires", type=_date, default=None,
                   help="the credits' last day, YYYY-MM-DD (default: the end of the expiry month)")
    p.add_argument("--customer", type=ident, default=None)
    p.add_argument("--name", default="")
    p.add_argument("--timezone", default="UTC", help="IANA zone its days count in")
    p.add_argument("--amount", type=decimal_units, default=0, help="paid at once onto the first credit")
    p.add_argument("--key", default=None, help="the payment's reference (with --amount)")
    _keys_options(p)

    p = command(g, "topup", "book a payment and its bonus (the same --key again books nothing)", cmd_topup,
                reason=True)
    _target(p)
    p.add_argument("--amount", type=decimal_units, required=True)
    p.add_argument("--key", required=True, help="the payment's reference")
    p.add_argument("--wallet", type=ident, default=None, help="the credit, when the card has several")
    p = command(g, "refund", "pay back the money paid in and not spent (not the bonus; never a gift card)",
                cmd_refund, reason=True, required=True)
    _target(p)
    p.add_argument("--key", required=True, help="the pay-out's reference")
    p = command(g, "reverse", "undo a top-up and its bonus, while both are unspent", cmd_reverse,
                reason=True, required=True)
    p.add_argument("--key", required=True, help="the top-up's reference")
    p = command(g, "show", "the card's credits: balance, available, refundable", cmd_show)
    _target(p)

    g = group(sub, "topup-bonus", "bonuses on prepaid and gift card top-ups: add, list, end")
    p = command(g, "add", "pay at least --min, get --pct percent and/or --amount on top", cmd_bonus_add)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--min", type=decimal_units, required=True, help="the least top-up it applies to")
    p.add_argument("--pct", type=int, default=0, help="percent of the top-up, rounded down to the cent")
    p.add_argument("--amount", type=decimal_units, default=0, help="a fixed amount on top")
    p.add_argument("--from", dest="start", type=_date, default=None, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", type=_date, default=None, help="last day, YYYY-MM-DD")
    p = command(g, "list", "every offer (--on DAY: those in force that day)", cmd_bonus_list)
    p.add_argument("--on", type=_date, default=None)
    p = command(g, "end", "give an offer its last day (default yesterday)", cmd_bonus_end, reason=True)
    p.add_argument("id", metavar="ID", type=ident)
    p.add_argument("--on", type=_date, default=None, help="its last day, YYYY-MM-DD")
