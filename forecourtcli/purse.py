"""`forecourt provision sam` (the technician fits the purse SAM: provisioning.sam) and `forecourt registry
purse-sam list|release|revoke` (the operator's view of enrolled SAMs: registry.purse.enrol).

Both hang under existing command groups: add_parsers(sub) finds the `provision` and `registry` parsers
that forecourtcli.provision and forecourtcli.main made (this module is listed after them). No key is
printed: a SAM's id, state, key version and certificate expiry only.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

__all__ = ["add_parsers"]

EPILOG = "exit codes: 0 ok, 1 run failed (the SAM refused a step, no answer in time), 2 usage or " \
         "configuration error (no SAM reader, a refused enrolment), 3 broker unreachable"


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    """The subcommand table of a parser made elsewhere (argparse keeps it among the parser's actions)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError("parser has no subcommands")


def _sam_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise argparse.ArgumentTypeError(f"a SAM id is 16 hex digits, not {text[:20]!r}")
    return raw


def cmd_provision_sam(args: argparse.Namespace) -> int:
    from forecourtcli.provision import _config
    from provisioning.sam import provision_sam

    done = provision_sam(_config(args), timeout=args.timeout)
    expiry = dt.datetime.fromtimestamp(done.expiry, dt.UTC)
    state = "personalised" if done.changed else "already personalised"
    print(f"SAM {done.sam_id.hex()} {state}: SAM key version {done.key_version}, certificate valid to "
          f"{expiry:%Y-%m-%d}")
    return 0


def cmd_sam_list(args: argparse.Namespace) -> int:
    from forecourtcli.fleet import session, table
    from registry.purse.enrol import sams

    with session(args.db) as s:
        rows = [[r.sam_id, r.terminal, r.status, str(r.key_version), str(r.last_seq),
                 f"{r.created_at:%Y-%m-%d}"] for r in sams(s, args.terminal)]
    print(table(["sam", "terminal", "status", "key", "last seq", "enrolled"], rows), end="")
    return 0


def _set_status(args: argparse.Namespace, status: str, said: str) -> int:
    from forecourtcli.fleet import ops, session
    from registry.purse.enrol import set_sam_status

    with session(args.db) as s:
        row = set_sam_status(s, args.sam_id, status, reason=args.reason, **ops(args))
        print(f"SAM {row.sam_id} {said} (was at {row.terminal})")
    return 0


def cmd_sam_release(args: argparse.Namespace) -> int:
    from registry.purse.enrol import REPLACED

    return _set_status(args, REPLACED, "released: another terminal may enrol it")


def cmd_sam_revoke(args: argparse.Namespace) -> int:
    return _set_status(args, "revoked", "revoked: no terminal enrols it again by itself")


def add_parsers(sub: Any) -> None:
    from forecourtcli.fleet import command, group
    from forecourtcli.main import LEVELS, _level
    from forecourtcli.provision import _seconds

    psub = _subcommands(sub.choices["provision"])
    p = psub.add_parser("sam", help="fit the purse SAM in [devices] sam_reader: key pair, certificate and "
                        "SAM key from the registry", epilog=EPILOG)
    p.add_argument("--config", required=True, help="the terminal's TOML configuration")
    p.add_argument("--timeout", type=_seconds, default=10.0,
                   help="seconds to wait for the SAM or the registry")
    p.add_argument("--log-level", default="ERROR", type=_level, help=LEVELS.replace("INFO)", "ERROR)"))
    p.set_defaults(func=cmd_provision_sam)

    g = group(_subcommands(sub.choices["registry"]), "purse-sam", "the terminals' purse SAMs: list, release, "
              "revoke")
    p = command(g, "list", "every SAM enrolled: terminal, status, key version, last sequence", cmd_sam_list)
    p.add_argument("--terminal", default=None, help="only this terminal's")
    changes = (("release", cmd_sam_release, "free a SAM from its terminal (to fit it elsewhere)"),
               ("revoke", cmd_sam_revoke, "a SAM lost or stolen: never enrolled again"))
    for name, func, text in changes:
        p = command(g, name, text, func, reason=True, required=True)
        p.add_argument("sam_id", type=_sam_id, help="the SAM's id, 16 hex digits")
