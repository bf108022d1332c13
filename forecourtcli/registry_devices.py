"""`forecourt registry token create` and `forecourt registry device list|show|accept|revoke|decommission|
import`: the operator's side of enrollment (registry.devices). A token is printed once, alone on stdout."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.pki import Authority

__all__ = ["add_parsers", "parse_ttl"]

EPILOG = ("exit codes: 0 ok, 1 run failed (a move the device's status does not allow), 2 usage or "
          "configuration error (an unknown device, a bad CSV line), 3 missing system component")
DB_HELP = "SQLAlchemy URL, e.g. sqlite:///registry.db"
TLS_HELP = "the certificate authority's directory (forecourt registry pki init --dir)"
# Mosquitto reads crl.pem at start and on SIGHUP only, and keeps connections already open (docs/security.md)
RELOAD = "; restart the broker (or SIGHUP it and make the device reconnect) for the CRL to take effect"
# a device the registry never issued a certificate to (a seeded one before it enrolled)
NO_CERTIFICATE = "it has no certificate on record: nothing was put on the CRL"
_TTL = re.compile(r"([0-9]{1,6})([smhd]?)", re.ASCII)
_UNIT = {"s": 1, "m": 60, "": 60, "h": 3600, "d": 86400}
LIST_COLUMNS = ("id", "station", "serial", "status", "cert_expires_at", "last_seen_at", "online",
                "config_desired", "config_reported", "software_desired", "software_reported", "backlog")


def parse_ttl(text: str) -> dt.timedelta:
    """argparse type of a token lifetime: 15m, 2h, 1d, 90s (minutes without a unit).

    >>> parse_ttl("15m"), parse_ttl("2h")
    (datetime.timedelta(seconds=900), datetime.timedelta(seconds=7200))
    """
    match = _TTL.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"lifetime must be a number with s, m, h or d, not {text!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@contextmanager
def _session(url: str) -> Iterator[Session]:
    from registry.db import open_database

    engine, sessions = open_database(url)
    try:
        with sessions() as s:
            yield s
    finally:
        engine.dispose()


def _authority(text: str | None) -> Authority:
    from registry.pki import Authority

    if not text:
        raise ConfigError("--tls-dir is needed to revoke a certificate", key="--tls-dir")
    return Authority.load(Path(text))


@contextmanager
def _known() -> Iterator[None]:
    """An unknown device id is a usage error (exit 2)."""
    from registry.devices import UnknownDevice

    try:
        yield
    except UnknownDevice as exc:
        raise ConfigError(str(exc).split(" (")[0], key="ID") from exc


def cmd_token_create(args: argparse.Namespace) -> int:
    from registry.devices import create_token

    now = _now()
    with _session(args.db) as s:
        token = create_token(s, args.station, now, device_id=args.device_id, ttl=args.ttl)
    who = f" device {args.device_id}" if args.device_id else ""
    print(token)
    until = f"{now + args.ttl:%Y-%m-%d %H:%M}"
    print(f"enrollment token for station {args.station}{who}, valid until {until} UTC; shown once",
          file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from registry.devices import list_devices

    with _session(args.db) as s:
        rows = [v.fields() for v in list_devices(s, station=args.station)]
    columns = tuple(rows[0]) if args.csv and rows else LIST_COLUMNS
    print(_csv(rows, columns) if args.csv else _table(rows, columns), end="")
    return 0


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[r[c] for c in columns] for r in rows])
    return out.getvalue()


def _table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    widths = [max([len(c)] + [len(r[c]) for r in rows]) for c in columns]
    lines = [[c.upper() for c in columns], *([r[c] or "-" for c in columns] for r in rows)]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in lines)


def cmd_show(args: argparse.Namespace) -> int:
    from registry.devices import device_view

    with _session(args.db) as s, _known():
        fields = device_view(s, args.device).fields()
    width = max(map(len, fields))
    print("".join(f"{k.ljust(width)}  {v or '-'}\n" for k, v in fields.items()), end="")
    return 0


def _move(what: Callable[..., Any], needs_authority: bool, done: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        extra = (_authority(args.tls_dir),) if needs_authority else ()
        with _session(args.db) as s, _known():
            device = what(s, *extra, args.device, _now()) if needs_authority else what(s, args.device)
        said = NO_CERTIFICATE if needs_authority and device.cert_pem is None else done
        print(f"{device.id}: {device.status}; {said}")
        return 0
    return cmd


def cmd_import(args: argparse.Namespace) -> int:
    from registry.devices import import_expected

    try:
        text = sys.stdin.read() if args.csv_file == "-" else Path(args.csv_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {args.csv_file}: {getattr(exc, 'strerror', None) or exc}",
                          key="CSV") from exc
    with _session(args.db) as s:
        count = import_expected(s, text, _now())
    print(f"{count} serial numbers registered: their devices are accepted when they enroll")
    return 0


def add_parsers(sub: Any) -> None:
    from registry import devices

    t = sub.add_parser("token", help="one-time enrollment tokens", epilog=EPILOG)
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    c = tsub.add_parser("create", help="a one-time token for a new device of a station (printed once)",
                        epilog=EPILOG)
    c.add_argument("--db", required=True, help=DB_HELP)
    c.add_argument("--station", required=True, help="the station the device belongs to")
    c.add_argument("--device-id", default=None, help="the id the device gets (default: from the serial)")
    c.add_argument("--ttl", type=parse_ttl, default=devices.TOKEN_TTL,
                   help="how long the token is valid: 15m (default), 2h, 1d")
    c.set_defaults(func=cmd_token_create)

    d = sub.add_parser("device", help="devices: list, show, accept, revoke, decommission, import serials",
                       epilog=EPILOG)
    dsub = d.add_subparsers(dest="device_command", required=True, metavar="COMMAND")
    ls = dsub.add_parser("list", help="every device: status, certificate, versions, backlog", epilog=EPILOG)
    ls.add_argument("--db", required=True, help=DB_HELP)
    ls.add_argument("--station", default=None, help="only this station's devices")
    ls.add_argument("--csv", action="store_true", help="CSV with every field instead of a table")
    ls.set_defaults(func=cmd_list)
    moves = (("show", cmd_show, False, "everything the registry knows of a device"),
             ("accept", _move(devices.accept, False, "the registry sends its certificate and keys"), False,
              "accept a pending device"),
             ("revoke", _move(devices.revoke, True, "its certificate is on the CRL (crl.pem)" + RELOAD), True,
              "revoke an active device's certificate"),
             ("decommission", _move(devices.decommission, True, "retired for good" + RELOAD), True,
              "retire a device for good (its certificate revoked)"))
    for name, func, tls, text in moves:
        p = dsub.add_parser(name, help=text, epilog=EPILOG)
        p.add_argument("device", metavar="ID", help="the device id")
        p.add_argument("--db", required=True, help=DB_HELP)
        if tls:
            p.add_argument("--tls-dir", required=True, help=TLS_HELP)
        p.set_defaults(func=func)
    i = dsub.add_parser("import", help="register serial numbers ahead (CSV: serial,station[,device_id])",
                        epilog=EPILOG)
    i.add_argument("csv_file", metavar="CSV", help="the CSV file, - for stdin")
    i.add_argument("--db", required=True, help=DB_HELP)
    i.set_defaults(func=cmd_import)
