"""`forecourt registry card issue|activate|block|unblock|lost|stolen|withdraw|reissue|show|list|expire`
(registry.fleet.cards). A card number and a PIN are read from standard input (or asked without echo on a
terminal), never from the command line, where the shell's history and `ps` would keep them."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError
from forecourtcli.fleet import EPILOG, common, ident, now, session, table

if TYPE_CHECKING:
    from registry.keys import RegistryKeys

__all__ = ["add_card_parsers"]

KEYS_FILE = "registry-keys.json"
STDIN_ONLY = "card numbers are read from standard input: give --number - and type or pipe the number"


def _stdin_only(text: str) -> str:
    """argparse type of --number: only "-" (the value itself would be a card number in argv)."""
    if text != "-":
        raise argparse.ArgumentTypeError(STDIN_ONLY)        # the value is never echoed
    return text


def _secrets(pin: bool) -> tuple[str, str | None]:
    """The card number (line 1) and, with pin, the PIN (line 2) from stdin, or asked on a terminal."""
    if sys.stdin.isatty():
        number = getpass.getpass("card number: ")
        return number, getpass.getpass("PIN: ") if pin else None
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0].strip() or (pin and (len(lines) < 2 or not lines[1].strip())):
        raise ConfigError("standard input must hold the card number" + (" and, on a second line, the PIN"
                                                                         if pin else ""), key="--number")
    return lines[0].strip(), lines[1].strip() if pin else None


def _keys(args: argparse.Namespace) -> RegistryKeys:
    """The registry's keys from its state directory; one without them is refused (never new keys made in a
    wrong directory: tokens no authorization would find)."""
    from registry.keys import load_or_create_keys

    state = Path(args.state_dir)
    if not (state / KEYS_FILE).is_file():
        raise ConfigError(f"--state-dir {state} holds no {KEYS_FILE}: name the registry's state directory",
                          key="--state-dir")
    return load_or_create_keys(state / KEYS_FILE, Path(args.kek) if args.kek else None)


def cmd_issue(args: argparse.Namespace) -> int:
    from registry.fleet import cards

    keys = _keys(args)
    number, pin = _secrets(args.pin)
    with session(args.db) as s:
        card = cards.issue_card(s, keys, args.account, number, medium=args.medium, expiry=args.expiry,
                                pin=pin, vehicle_id=args.vehicle, driver_id=args.driver, actor=_actor(args),
                                now=now(), activate=args.activate)
        print(f"card {card.id}: {card.masked}, {card.status}")
    return 0


def cmd_reissue(args: argparse.Namespace) -> int:
    from registry.fleet import cards

    keys = _keys(args)
    number, pin = _secrets(args.pin)
    with session(args.db) as s:
        card = cards.reissue(s, keys, args.card, number, medium=args.medium, expiry=args.expiry, pin=pin,
                             actor=_actor(args), reason=args.reason, now=now(), activate=args.activate)
        print(f"card {args.card} replaced by card {card.id}: {card.masked}, {card.status}")
    return 0


def _actor(args: argparse.Namespace) -> str:
    from forecourtcli.fleet import actor

    return actor(args)


def _move(action: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        from registry.fleet import cards

        chosen = "block" if action == "temp_block" and args.final else action
        with session(args.db) as s:
            card = cards.move(s, args.card, chosen, actor=_actor(args), reason=args.reason, now=now())
            print(f"card {card.id} {card.masked}: {card.status}")
        return 0
    return cmd


def cmd_show(args: argparse.Namespace) -> int:
    from registry.fleet.admin import get
    from registry.models import Card, Driver, Vehicle

    with session(args.db) as s:
        c = get(s, Card, args.card, "card")
        vehicle = s.get(Vehicle, c.vehicle_id) if c.vehicle_id is not None else None
        driver = s.get(Driver, c.driver_id) if c.driver_id is not None else None
        changed = f"{c.status_changed_at:%Y-%m-%d %H:%M} UTC" if c.status_changed_at else "-"
        fields = {"id": str(c.id), "number": c.masked, "status": c.status, "medium": c.medium,
                  "account": str(c.account_id or "-"), "vehicle": vehicle.number if vehicle else "-",
                  "driver": driver.code if driver else "-", "expiry": c.expiry,
                  "pin": f"set, {c.pin_tries} wrong tries" if c.pin_verifier else "none",
                  "replaced_by": str(c.replaced_by or "-"),
                  "status_changed_at": changed}
    width = max(map(len, fields))
    print("".join(f"{k.ljust(width)}  {v}\n" for k, v in fields.items()), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry.models import Card

    query = select(Card).order_by(Card.id)
    if args.account is not None:
        query = query.where(Card.account_id == args.account)
    if args.status is not None:
        query = query.where(Card.status == args.status)
    with session(args.db) as s:
        rows = [[str(c.id), c.masked, c.status, c.medium, c.expiry, str(c.account_id or "-"),
                 str(c.vehicle_id or "-"), str(c.driver_id or "-")] for c in s.scalars(query)]
    print(table(["ID", "NUMBER", "STATUS", "MEDIUM", "EXPIRY", "ACCOUNT", "VEHICLE", "DRIVER"], rows), end="")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    from registry.fleet import cards

    with session(args.db) as s:
        count = cards.expire_cards(s, now(), actor=_actor(args))
    print(f"{count} cards past their expiry month marked expired")
    return 0


def _secret_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--number", type=_stdin_only, required=True, metavar="-",
                   help="- : the card number (a tag's UID in hex) on standard input, never in the command")
    p.add_argument("--pin", action="store_true", help="the card has a PIN: the second line of standard input")
    p.add_argument("--expiry", required=True, help="YYMM")
    p.add_argument("--activate", action="store_true", help="active at once (default: new, activated later)")
    p.add_argument("--state-dir", default=".", help="the registry's state directory (its card-token keys)")
    p.add_argument("--kek", default=None, help="key-encryption key file (default: STATE_DIR/kek.hex)")


def add_card_parsers(sub: Any) -> None:
    from registry.fleet import cards

    g = sub.add_parser("card", help="fleet cards: issue, status changes, reissue, show, list",
                       epilog=EPILOG).add_subparsers(dest="card_command", required=True, metavar="COMMAND")
    p = g.add_parser("issue", help="a new card of an account", epilog=EPILOG)
    common(p)
    p.add_argument("--account", type=ident, required=True)
    p.add_argument("--medium", choices=cards.MEDIA, default="chip")
    p.add_argument("--vehicle", type=ident, default=None, help="the vehicle id it belongs to")
    p.add_argument("--driver", type=ident, default=None, help="the driver id it belongs to")
    _secret_options(p)
    p.set_defaults(func=cmd_issue)
    p = g.add_parser("reissue", help="replace a card by a new number (the old one refused from then on)",
                     epilog=EPILOG)
    common(p, reason=True, required=True)
    p.add_argument("card", metavar="ID", type=ident)
    p.add_argument("--medium", choices=cards.MEDIA, default=None, help="default: the old card's")
    _secret_options(p)
    p.set_defaults(func=cmd_reissue)
    moves = (("activate", "activate", "a new card may buy"),
             ("block", "temp_block", "block a card for now (--final: for good)"),
             ("unblock", "unblock", "a temporarily blocked card may buy again (its PIN tries reset)"),
             ("lost", "lost", "reported lost: refused for good, on the stop-list"),
             ("stolen", "stolen", "reported stolen: refused for good, on the stop-list"),
             ("withdraw", "withdraw", "withdrawn for good"))
    for name, action, text in moves:
        p = g.add_parser(name, help=text, epilog=EPILOG)
        common(p, reason=True, required=True)
        p.add_argument("card", metavar="ID", type=ident)
        if name == "block":
            p.add_argument("--final", action="store_true", help="blocked for good (reissue to replace it)")
        p.set_defaults(func=_move(action))
    p = g.add_parser("show", help="one card: status, medium, vehicle, driver, PIN tries", epilog=EPILOG)
    common(p)
    p.add_argument("card", metavar="ID", type=ident)
    p.set_defaults(func=cmd_show)
    p = g.add_parser("list", help="cards, of an account or with a status", epilog=EPILOG)
    common(p)
    p.add_argument("--account", type=ident, default=None)
    p.add_argument("--status", default=None)
    p.set_defaults(func=cmd_list)
    p = g.add_parser("expire", help="mark every card past its expiry month expired", epilog=EPILOG)
    common(p)
    p.set_defaults(func=cmd_expire)
