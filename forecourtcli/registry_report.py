"""`forecourt registry report devices|versions|certificates|gaps` (a table, or CSV) and
`forecourt registry device command ID NAME` (a remote command, sent once the device is online)."""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Any

from contracts.device_messages import COMMANDS

__all__ = ["add_device_command", "add_parsers", "cmd_command", "cmd_report"]

EPILOG = "exit codes: 0 ok, 1 run failed, 2 usage or configuration error, 3 missing system component"
WHAT = ("devices", "versions", "certificates", "gaps")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def cmd_report(args: argparse.Namespace) -> int:
    from registry import reports
    from registry.db import open_database

    engine, sessions = open_database(args.db)
    try:
        with sessions() as s:
            if args.what == "certificates":
                table = reports.certificates(s, _now(), args.days)
            else:
                table = reports.REPORTS[args.what](s, _now())
    finally:
        engine.dispose()
    print(reports.to_csv(table) if args.csv else reports.to_text(table), end="")
    return 0


def _minutes(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 7 * 24 * 60:
        raise argparse.ArgumentTypeError(f"minutes must be 1..10080, not {text!r}")
    return int(text)


def cmd_command(args: argparse.Namespace) -> int:
    from registry.db import open_database
    from registry.fleetops import queue_command

    engine, sessions = open_database(args.db)
    try:
        with sessions() as s:
            row = queue_command(s, args.device, args.name, ttl=dt.timedelta(minutes=args.ttl), now=_now(),
                                command_id=str(uuid.uuid4()))
            until = f"{row.expires_at:%Y-%m-%d %H:%M}"
            print(f"{row.id} {row.name} for {row.device_id}: pending until {until} UTC")
    finally:
        engine.dispose()
    return 0


def add_device_command(device_sub: Any) -> None:
    """`command ID NAME` under `forecourt registry device` (the device parser's subparsers)."""
    c = device_sub.add_parser("command", help="queue a remote command; sent when the device is online",
                              epilog=EPILOG)
    c.add_argument("device", metavar="ID", help="the device id")
    c.add_argument("name", metavar="NAME", choices=COMMANDS, help=" | ".join(COMMANDS))
    c.add_argument("--ttl", type=_minutes, default=15, help="minutes it may wait for the device (default 15)")
    c.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///registry.db")
    c.set_defaults(func=cmd_command)


def add_parsers(sub: Any) -> None:
    from registry.reports import EXPIRY_WINDOWS

    r = sub.add_parser("report", help="devices, versions, certificates expiring, sales not received (gaps)",
                       epilog=EPILOG)
    r.add_argument("what", choices=WHAT, help=" | ".join(WHAT))
    r.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///registry.db")
    r.add_argument("--days", type=int, choices=EXPIRY_WINDOWS, default=30,
                   help="certificates: expiring within 30, 60 or 90 days (default 30)")
    r.add_argument("--csv", action="store_true", help="CSV instead of a table")
    r.set_defaults(func=cmd_report)
    # `device` is forecourtcli.registry_devices' (list, accept, revoke...), listed before this module in
    # REGISTRY_COMMANDS: `command` joins its subcommands; without it, a `device` parser of its own
    device = sub.choices.get("device")
    if device is None:
        device = sub.add_parser("device", help="manage devices", epilog=EPILOG)
        add_device_command(device.add_subparsers(dest="device_command", required=True, metavar="COMMAND"))
        return
    add_device_command(next(a for a in device._actions if isinstance(a, argparse._SubParsersAction)))
