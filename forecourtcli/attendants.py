"""`forecourt registry attendant add|card|pin|lock|unlock|withdraw|list`: station attendants
(registry.attendants). The card number and the PIN are read from standard input (or asked without echo on
a terminal), never from the command line, where the shell's history and `ps` would keep them. Every change
is audited with --actor (default $USER); lock, unlock and withdraw say why (--reason)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError
from forecourtcli.fleet import actor, command, group, now, session, table

if TYPE_CHECKING:
    from registry.keys import RegistryKeys

__all__ = ["add_parsers"]

KEYS_FILE = "registry-keys.json"


def _stdin_only(text: str) -> str:
    """argparse type of --number: only "-" (the value itself would be a card number in argv)."""
    if text != "-":
        raise argparse.ArgumentTypeError("the card number is read from standard input: give --number -")
    return text


def _secret(prompt: str, *, confirm: bool = False) -> str:
    """One secret line: asked without echo on a terminal (twice with confirm), else standard input's first."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{prompt}: ")
        if confirm and getpass.getpass(f"{prompt} again: ") != value:
            raise ConfigError(f"the two {prompt}s differ", key=prompt.replace(" ", "_"))
        return value.strip()
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"standard input must hold the {prompt}", key=prompt.replace(" ", "_"))
    return lines[0].strip()


def _keys(args: argparse.Namespace) -> RegistryKeys:
    """The registry's keys from its state directory; one without them is refused (never new keys made)."""
    from registry.keys import load_or_create_keys

    state = Path(args.state_dir)
    if not (state / KEYS_FILE).is_file():
        raise ConfigError(f"--state-dir {state} holds no {KEYS_FILE}: name the registry's state directory",
                          key="--state-dir")
    return load_or_create_keys(state / KEYS_FILE, Path(args.kek) if args.kek else None)


def cmd_add(args: argparse.Namespace) -> int:
    from registry import attendants

    with session(args.db) as s:
        row = attendants.add(s, args.id, args.name, role=args.role, stations=args.stations, actor=actor(args),
                             now=now())
        said = f"attendant {row.id}: {row.name}, {row.role}, stations {row.stations or 'any'}"
    print(said + "; next: set a card and a PIN")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from registry import attendants

    keys = _keys(args)
    number = _secret("card number")
    with session(args.db) as s:
        masked = attendants.set_card(s, keys, args.id, number, medium=args.medium, actor=actor(args),
                                     now=now())
    print(f"attendant {args.id}: card {masked}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    from registry import attendants

    pin = _secret("PIN", confirm=True)
    with session(args.db) as s:
        attendants.set_pin(s, args.id, pin, actor=actor(args), now=now())
    print(f"attendant {args.id}: PIN set")
    return 0


def _move(name: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        from registry import attendants

        what = {"lock": attendants.lock, "unlock": attendants.unlock, "withdraw": attendants.withdraw}[name]
        with session(args.db) as s:
            row = what(s, args.id, actor=actor(args), reason=args.reason, now=now())
            said = f"attendant {row.id}: {row.status}"
        print(said)
        return 0
    return cmd


def cmd_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from registry.attendants import has_pin
    from registry.loyalty_models import Attendant

    query = select(Attendant).order_by(Attendant.id)
    if args.status:
        query = query.where(Attendant.status == args.status)
    with session(args.db) as s:
        rows = [[a.id, a.name, a.role, a.status, a.stations or "any", "set" if a.card_token else "-",
                 "set" if has_pin(a) else "-", str(a.failed_tries)]
                for a in s.scalars(query)
                if not args.station or not a.stations or args.station in a.stations.split(",")]
    print(table(["ID", "NAME", "ROLE", "STATUS", "STATIONS", "CARD", "PIN", "WRONG TRIES"], rows), end="")
    return 0


def add_parsers(sub: Any) -> None:
    from registry import attendants
    from registry.fleet.cards import MEDIA

    g = group(sub, "attendant", "station attendants: add, card, pin, lock, unlock, withdraw, list")
    p = command(g, "add", "a new attendant (signs in once a card and a PIN are set)", cmd_add)
    p.add_argument("id", metavar="ID", help="1 to 16 of A-Z a-z 0-9 _ . -")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=attendants.ROLES, default="attendant")
    p.add_argument("--stations", default="", help="station ids, comma-separated, where they may sign in; "
                   "'' any")
    p = command(g, "card", "give the attendant a card (replaces the one they had)", cmd_card)
    p.add_argument("id", metavar="ID")
    p.add_argument("--number", type=_stdin_only, required=True, metavar="-",
                   help="- : the card number (a tag's UID in hex) on standard input, never in the command")
    p.add_argument("--medium", choices=MEDIA, default="chip")
    p.add_argument("--state-dir", default=".", help="the registry's state directory (its card-token keys)")
    p.add_argument("--kek", default=None, help="key-encryption key file (default: STATE_DIR/kek.hex)")
    p = command(g, "pin", "set the attendant's PIN (4 to 6 digits, not 1111 nor 1234): standard input, or "
                "asked twice without echo", cmd_pin)
    p.add_argument("id", metavar="ID")
    for name, text in (("lock", "refuse their sign-in until unlocked"),
                       ("unlock", "a locked attendant may sign in again (wrong tries start again)"),
                       ("withdraw", "for good: never signs in again")):
        p = command(g, name, text, _move(name), reason=True, required=True)
        p.add_argument("id", metavar="ID")
    p = command(g, "list", "attendants: role, status, stations, whether card and PIN are set", cmd_list)
    p.add_argument("--station", default=None, help="only those who may sign in at this station")
    p.add_argument("--status", choices=("active", "locked", "withdrawn"), default=None)
