"""`forecourt registry loyalty account|rule|promo|tier|setting|close ...`: the loyalty programme from the
registry's command line (registry.loyalty.admin, tiers, close). Every change is audited with --actor
(default $USER). Card numbers are read from standard input (--number -), never from the command line.

Points per litre or currency unit take up to 3 decimals (1.5 = 1500 thousandths); money has 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

from forecourtcli.fleet import actor, command, decimal_units, group, ident, now, ops, session, table
from forecourtcli.fleet_cards import _keys, _secrets, _stdin_only

__all__ = ["add_parsers", "milli", "money", "shown_milli"]

_MILLI = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,3}))?", re.ASCII)


def milli(text: str) -> int:
    """argparse type of points with up to 3 decimals, in thousandths: "1.5" -> 1500.

    >>> milli("1.5"), milli("2"), milli("0.125")
    (1500, 2000, 125)
    """
    match = _MILLI.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"points must be a number with up to 3 decimals, not {text[:20]!r}")
    whole, part = match.groups()
    return int(whole) * 1000 + int((part or "0").ljust(3, "0"))


def shown_milli(value: int) -> str:
    """Thousandths as a decimal, exactly: 1500 -> "1.5".

    >>> shown_milli(1500), shown_milli(2000), shown_milli(125)
    ('1.5', '2', '0.125')
    """
    return f"{value // 1000}.{value % 1000:03d}".rstrip("0").rstrip(".")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, not {text[:20]!r}") from exc


def _day(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else "-"


def cmd_account_add(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        a = admin.create_account(s, args.name, issued_on=args.issued_on or now().date(),
                                 timezone=args.timezone, customer_id=args.customer, **ops(args))
        said = f"loyalty account {a.id}: {a.name}, time zone {a.timezone}"
    print(said)
    return 0


def cmd_account_show(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        v = admin.show(s, args.account)
    print(f"loyalty account {v.id}: {v.name} ({v.status}), tier {v.tier}, {v.balance} points\n"
          f"issued {v.issued_on.isoformat()}, first used "
          f"{v.first_used_at.isoformat(' ', 'minutes') if v.first_used_at else 'never'}, "
          f"pooled into {v.pool_account_id or 'none'}")
    print(table(["CARD", "NUMBER", "STATUS"], [[str(i), masked, status] for i, masked, status in v.cards]
                + [["link", masked, ""] for masked in v.links]), end="")
    return 0


def cmd_account_card(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    keys = _keys(args)
    number, _ = _secrets(False)
    with session(args.db) as s:
        card = admin.add_card(s, keys, args.account, number, medium=args.medium, expiry=args.expiry,
                              **ops(args))
        said = f"loyalty card {card.id}: {card.masked} on account {args.account}, {card.status}"
    print(said)
    return 0


def cmd_account_link(args: argparse.Namespace) -> int:
    from contracts.errors import ConfigError
    from registry.loyalty import admin

    keys = _keys(args)
    number, _ = _secrets(False)
    with session(args.db) as s:
        if args.remove:
            if not args.reason.strip():
                raise ConfigError("removing a link needs --reason", key="--reason")
            admin.unlink_card(s, keys, args.account, number, medium=args.medium, reason=args.reason,
                              **ops(args))
            said = f"card unlinked from loyalty account {args.account}"
        else:
            link = admin.link_card(s, keys, args.account, number, medium=args.medium, **ops(args))
            said = f"card {link.masked} linked: its sales earn on loyalty account {args.account}"
    print(said)
    return 0


def cmd_account_pool(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        admin.set_pool(s, args.account, args.into, **ops(args))
    print(f"loyalty account {args.account}: " + (f"pooled into {args.into} at each monthly close" if args.into
                                                 else "not pooled"))
    return 0


def cmd_rule_add(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        r = admin.add_rule(s, args.product, args.basis, args.points, starts_on=args.start, ends_on=args.end,
                           **ops(args))
        said = f"earn rule {r.id}: {r.product}, {shown_milli(r.milli_points)} points per " + (
            "litre" if r.basis == "volume" else "currency unit")
    print(said)
    return 0


def cmd_rule_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry.models import EarnRule

    with session(args.db) as s:
        rows = [[str(r.id), r.product, r.basis, shown_milli(r.milli_points), _day(r.starts_on),
                 _day(r.ends_on)] for r in s.scalars(select(EarnRule).order_by(EarnRule.id))]
    print(table(["ID", "PRODUCT", "BASIS", "POINTS", "FROM", "TO"], rows), end="")
    return 0


def cmd_promo_add(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        p = admin.add_promotion(s, args.name, position=args.position, product=args.product,
                                stations=args.stations, starts_on=args.start, ends_on=args.end,
                                multiplier_pct=args.multiplier, bonus_points=args.bonus, stop=args.stop,
                                **ops(args))
        said = f"promotion {p.id}: {p.name}, position {p.position}, {p.starts_on} to {p.ends_on}"
    print(said)
    return 0


def cmd_promo_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry.models import Promotion

    with session(args.db) as s:
        rows = [[str(p.id), str(p.position), p.name, p.product, p.stations or "any", _day(p.starts_on),
                 _day(p.ends_on), f"{p.multiplier_pct}%", str(p.bonus_points), "stop" if p.stop else "",
                 p.status] for p in s.scalars(select(Promotion).order_by(Promotion.position, Promotion.id))]
    print(table(["ID", "POS", "NAME", "PRODUCT", "STATIONS", "FROM", "TO", "X", "BONUS", "STOP", "STATUS"],
                rows), end="")
    return 0


def _end(what: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        from registry.loyalty import admin

        on = args.on or now().date()
        with session(args.db) as s:
            row = (admin.end_rule if what == "rule" else admin.end_promotion)(s, args.id, on=on, **ops(args))
            said = f"{'earn rule' if what == 'rule' else 'promotion'} {args.id}: last day {_day(row.ends_on)}"
        print(said)
        return 0
    return cmd


def cmd_tier_set(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        t = admin.set_tier(s, args.name, rank=args.rank, multiplier_pct=args.multiplier,
                           min_spend_cents=args.min_spend, **ops(args))
        said = f"tier {t.name}: rank {t.rank}, x{t.multiplier_pct}%, from {money(t.min_spend_cents)} spent"
    print(said)
    return 0


def cmd_tier_list(args: argparse.Namespace) -> int:
    from registry.loyalty.tiers import tier_specs

    with session(args.db) as s:
        rows = [[t.name, str(t.rank), f"{t.multiplier_pct}%", money(t.min_spend_cents)]
                for t in tier_specs(s)]
    print(table(["TIER", "RANK", "MULTIPLIER", "MIN SPEND"], rows), end="")
    return 0


def cmd_setting_set(args: argparse.Namespace) -> int:
    from registry.loyalty import admin

    with session(args.db) as s:
        value = admin.set_setting(s, args.key, args.value, **ops(args))
    print(f"{args.key} = {value}")
    return 0


def cmd_setting_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from registry.loyalty.settings import DEFAULTS, load

    with session(args.db) as s:
        now_set = asdict(load(s))
    print(table(["SETTING", "VALUE", "DEFAULT"], [[k, str(v), str(DEFAULTS[k])] for k, v in now_set.items()]),
          end="")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from registry.db import database_url, open_database
    from registry.loyalty.close import run_close

    database_url(args.db, key="--db")
    engine, sessions = open_database(args.db)
    try:
        done = run_close(sessions, args.month, now(), actor=actor(args))
    finally:
        engine.dispose()
    print(f"month {args.month} closed: {len(done.accounts)} accounts, {done.expired} points expired, "
          f"{done.pooled} pooled, {len(done.skipped)} skipped")
    for each in done.skipped:
        print(f"  account {each.account_id}: {each.skipped}")
    return 1 if done.skipped else 0


def _number_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("account", metavar="ID", type=ident)
    p.add_argument("--number", type=_stdin_only, required=True, metavar="-",
                   help="- : the card number (a tag's UID in hex) on standard input, never in the command")
    p.add_argument("--medium", choices=("chip", "stripe", "tag"), default="chip")
    p.add_argument("--state-dir", default=".", help="the registry's state directory (its card-token keys)")
    p.add_argument("--kek", default=None, help="key-encryption key file (default: STATE_DIR/kek.hex)")


def add_parsers(sub: Any) -> None:
    top = group(sub, "loyalty", "the loyalty programme: account, rule, promo, tier, setting, close")
    g = group(top, "account", "loyalty accounts: add, show, card, link, pool")
    p = command(g, "add", "a loyalty account and its points wallet", cmd_account_add)
    p.add_argument("--name", required=True)
    p.add_argument("--issued-on", type=_date, default=None, help="its cards' issue day (default today)")
    p.add_argument("--timezone", default="UTC", help="IANA zone its days count in")
    p.add_argument("--customer", type=ident, default=None, help="a fleet customer it belongs to")
    p = command(g, "show", "balance, tier, cards and linked cards (masked)", cmd_account_show)
    p.add_argument("account", metavar="ID", type=ident)
    p = command(g, "card", "a loyalty card sharing the account's balance (setting group_cards)",
                cmd_account_card)
    _number_options(p)
    p.add_argument("--expiry", required=True, help="YYMM")
    p = command(g, "link", "a fleet or bank card whose sales earn on the account", cmd_account_link,
                reason=True)
    _number_options(p)
    p.add_argument("--remove", action="store_true", help="remove the link (needs --reason)")
    p = command(g, "pool", "pool the account's points into another at each monthly close", cmd_account_pool)
    p.add_argument("account", metavar="ID", type=ident)
    into = p.add_mutually_exclusive_group(required=True)
    into.add_argument("--into", type=ident, help="the pool account")
    into.add_argument("--none", dest="into", action="store_const", const=None, help="stop pooling")
    g = group(top, "rule", "earn rules: add, list, end")
    p = command(g, "add", "points per litre or currency unit for a product", cmd_rule_add)
    p.add_argument("--product", required=True, help="a product code, group:NAME or *")
    p.add_argument("--basis", choices=("volume", "money"), required=True)
    p.add_argument("--points", type=milli, required=True, help="per litre or currency unit, e.g. 1.5")
    p.add_argument("--from", dest="start", type=_date, default=None, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", type=_date, default=None, help="last day, YYYY-MM-DD")
    command(g, "list", "every earn rule", cmd_rule_list)
    g2 = group(top, "promo", "promotions: add, list, end")
    p = command(g2, "add", "a promotion, applied in position order", cmd_promo_add)
    p.add_argument("--name", required=True)
    p.add_argument("--position", type=int, required=True, help="lower applies first")
    p.add_argument("--product", default="*", help="a product code, group:NAME or * (default)")
    p.add_argument("--stations", default="", help="station ids and group:NAME, comma-separated; '' any")
    p.add_argument("--from", dest="start", type=_date, required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", type=_date, required=True, help="last day, YYYY-MM-DD")
    p.add_argument("--multiplier", type=int, default=100, help="percent of the points so far (200 doubles)")
    p.add_argument("--bonus", type=int, default=0, help="whole points added after the multiplier")
    p.add_argument("--stop", action="store_true", help="no promotion after this one when it applies")
    command(g2, "list", "every promotion in position order", cmd_promo_list)
    for grp, what in ((g, "rule"), (g2, "promo")):
        p = command(grp, "end", f"end the {what} (its last day; default today)", _end(what))
        p.add_argument("id", metavar="ID", type=ident)
        p.add_argument("--on", type=_date, default=None, help="last day, YYYY-MM-DD")
    g = group(top, "tier", "tiers: set, list")
    p = command(g, "set", "add or change a tier", cmd_tier_set)
    p.add_argument("name", metavar="NAME", help="lower case: base, silver, gold, platinum ...")
    p.add_argument("--rank", type=int, required=True, help="0 is the base tier; higher ranks need more spend")
    p.add_argument("--multiplier", type=int, required=True, help="percent (150 = 1.5 times)")
    p.add_argument("--min-spend", type=decimal_units, required=True,
                   help="money spent over the window (setting tier_window_months), e.g. 1500.00")
    command(g, "list", "every tier by rank", cmd_tier_list)
    g = group(top, "setting", "programme settings: set, list")
    p = command(g, "set", "change a setting", cmd_setting_set)
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    command(g, "list", "every setting, its value and default", cmd_setting_list)
    p = command(top, "close", "the monthly close: expiry, pooling, tier review (run again: nothing twice)",
                cmd_close)
    p.add_argument("--month", required=True, help="YYYY-MM, a month that has ended")
