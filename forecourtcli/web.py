"""`forecourt web serve|user|demo`: the back office (registry.web) beside the registry, on its database.

`serve` runs the web application (uvicorn) on HOST:PORT (loopback by default: put a TLS proxy in front of
it on a network, and give --secure-cookies). `user add|password|unlock|disable` manage sign-ins from the
shell (the first operator); a password is read from standard input, never from the command line.
`demo` adds the simulator's demo data and sign-ins (registry.web.demo) and prints them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from forecourtcli.fleet import now, session

__all__ = ["add_parsers"]


def _password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0]:
        raise ConfigError("standard input must hold the password", key="password")
    return lines[0]


def _settings(args: argparse.Namespace) -> Any:
    from registry.db import database_url
    from registry.web.settings import WebSettings

    database_url(args.db, key="--db")
    return WebSettings(db_url=args.db, state_dir=Path(args.state_dir) if args.state_dir else None,
                       tls_dir=Path(args.tls_dir) if args.tls_dir else None,
                       secure_cookies=args.secure_cookies, stop_list_poll=args.stop_list_poll)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.web.app import create_app

    app = create_app(_settings(args))
    print(f"forecourt web: http://{args.host}:{args.port}/", flush=True)
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                                  access_log=False, server_header=False)).run()
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from registry.web.auth import add_user

    password = _password()
    with session(args.db) as s:
        user = add_user(s, args.login, password, role=args.role, actor=args.actor or "shell", now=now(),
                        name=args.name, station_ids=args.stations, customer_id=args.customer,
                        account_id=args.account, language=args.language)
        print(f"web user {user.id} {user.login} ({user.role})")
    return 0


def _find(s: Any, login: str) -> Any:
    from sqlalchemy import select

    from registry.web_models import WebUser

    user = s.scalar(select(WebUser).where(WebUser.login == login.strip().lower()))
    if user is None:
        raise ConfigError(f"no web user {login!r}", key="--login")
    return user


def cmd_user_password(args: argparse.Namespace) -> int:
    from registry.web.auth import set_password

    password = _password()
    with session(args.db) as s:
        set_password(s, _find(s, args.login), password, actor=args.actor or "shell", now=now())
    print("password changed; the user's sessions are ended")
    return 0


def cmd_user_unlock(args: argparse.Namespace) -> int:
    from registry.fleet.admin import audit

    with session(args.db) as s:
        user = _find(s, args.login)
        user.failed_tries, user.locked_until = 0, None
        audit(s, actor=args.actor or "shell", action="web_user_unlock", subject=f"web_user:{user.id}",
              now=now())
    print("unlocked")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from registry.keys import load_or_create_keys
    from registry.web.demo import seed

    keys = load_or_create_keys(Path(args.state_dir) / "registry-keys.json")
    with session(args.db) as s:
        logins = seed(s, keys, now())
    for each in logins:
        print(f"  {each.role:<10} {each.login:<28} {each.password}")
    return 0


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="the registry's database (SQLAlchemy URL)")


def add_parsers(sub: Any) -> None:
    web = sub.add_parser("web", help="the back office: a web application on the registry's database")
    wsub = web.add_subparsers(dest="web_command", required=True, metavar="COMMAND")
    p = wsub.add_parser("serve", help="run the web application (uvicorn)")
    _db(p)
    p.add_argument("--state-dir", default=None, help="the registry's state directory (its keys)")
    p.add_argument("--tls-dir", default=None, help="the fleet authority (revoking terminals)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--secure-cookies", action="store_true",
                   help="cookies only over HTTPS (behind a TLS proxy)")
    p.add_argument("--stop-list-poll", type=int, default=30, help="the registry's --stop-list-poll (shown)")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_serve)
    user = wsub.add_parser("user", help="web sign-ins: add, password, unlock")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    p = usub.add_parser("add", help="add a web user (the password from standard input)")
    _db(p)
    p.add_argument("--login", required=True)
    p.add_argument("--role", required=True, choices=("operator", "station", "fleet", "cardholder"))
    p.add_argument("--name", default="")
    p.add_argument("--stations", default="", help="a station manager's stations: S1,S2")
    p.add_argument("--customer", type=int, default=None, help="a fleet user's customer id")
    p.add_argument("--account", type=int, default=None, help="a cardholder's account id")
    p.add_argument("--language", default="en", choices=("en", "ru", "es"))
    p.add_argument("--actor", default="")
    p.set_defaults(func=cmd_user_add)
    for name, func, text in (("password", cmd_user_password, "set a password (from standard input)"),
                             ("unlock", cmd_user_unlock, "forget wrong tries and end the lock")):
        p = usub.add_parser(name, help=text)
        _db(p)
        p.add_argument("--login", required=True)
        p.add_argument("--actor", default="")
        p.set_defaults(func=func)
    p = wsub.add_parser("demo", help="the simulator's demo data and sign-ins (prints them)")
    _db(p)
    p.add_argument("--state-dir", required=True, help="the registry's state directory (its keys)")
    p.set_defaults(func=cmd_demo)
