"""`forecourt registry release add BUNDLE` and `forecourt registry rollout start|status|halt`.

These write the registry's database; the running registry publishes what they decide (registry.releases).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "cmd_release_add", "cmd_rollout"]

EPILOG = "exit codes: 0 ok, 1 run failed, 2 usage or configuration error, 3 missing system component"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _percent(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"a percentage must be 0..100, not {text!r}")
    return int(text)


def cmd_release_add(args: argparse.Namespace) -> int:
    from contracts.errors import ConfigError
    from contracts.signing import trusted_from_b64
    from registry.configs import KEY_FILE, config_keys
    from registry.db import open_database
    from registry.releases import add_release

    state = Path(args.state_dir)
    if not (state / KEY_FILE).is_file():     # never a new key made in a wrong directory: none trusts it
        raise ConfigError(f"--state-dir {state} holds no {KEY_FILE}: name the registry's state directory",
                          key="--state-dir")
    trusted = trusted_from_b64(config_keys(state))      # the keys the terminals trust (config-keys.json)
    engine, sessions = open_database(args.db)
    try:
        with sessions() as s:
            release = add_release(s, Path(args.bundle), state, trusted, _now())
            print(f"release {release.version}: {release.size} bytes, sha256 {release.sha256}")
    finally:
        engine.dispose()
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'id':>4}  {'version':<16} {'status':<10} {'first %':>7} {'halt %':>6}  devices"]
    for r in rows:
        devices = ", ".join(f"{k} {v}" for k, v in sorted(r["devices"].items())) or "-"
        lines.append(f"{r['id']:>4}  {r['version']:<16} {r['status']:<10} {r['percent']:>7} "
                     f"{r['halt_at']:>6}  {devices}" + (f"  ({r['detail']})" if r["detail"] else ""))
    return "\n".join(lines) + "\n"


def cmd_rollout(args: argparse.Namespace) -> int:
    from registry.db import open_database
    from registry.releases import halt_rollout, rollout_status, start_rollout

    engine, sessions = open_database(args.db)
    try:
        with sessions() as s:
            if args.rollout_command == "start":
                r = start_rollout(s, args.version, args.percent, args.halt_at, _now())
                print(f"rollout {r.id} of {r.version}: first wave {args.percent} %, halts past "
                      f"{args.halt_at} % failures")
            elif args.rollout_command == "halt":
                r = halt_rollout(s, args.id, _now())
                print(f"rollout {r.id} of {r.version}: halted")
            else:
                print(_table(rollout_status(s)), end="")
    finally:
        engine.dispose()
    return 0


def add_parsers(sub: Any) -> None:
    db = {"required": True, "help": "SQLAlchemy URL, e.g. sqlite:///registry.db"}
    release = sub.add_parser("release", help="software releases: add a signed bundle", epilog=EPILOG)
    rs = release.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    a = rs.add_parser("add", help="check a bundle's signature and files and keep it as a release",
                      epilog=EPILOG)
    a.add_argument("bundle", metavar="BUNDLE", help="bundle file (forecourt release build)")
    a.add_argument("--db", **db)
    a.add_argument("--state-dir", default=".", help="the registry's state directory (its keys, releases)")
    a.set_defaults(func=cmd_release_add)

    rollout = sub.add_parser("rollout", help="staged rollouts of a release", epilog=EPILOG)
    ro = rollout.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    st = ro.add_parser("start", help="offer a release to a first wave, then to every device", epilog=EPILOG)
    st.add_argument("version", metavar="VERSION")
    st.add_argument("--percent", type=_percent, default=10,
                    help="first wave, percent of devices (default 10)")
    st.add_argument("--halt-at", type=_percent, default=20,
                    help="halt when more than this percent of finished devices failed (default 20)")
    st.add_argument("--db", **db)
    st.set_defaults(func=cmd_rollout)
    status = ro.add_parser("status", help="each rollout and its devices by status", epilog=EPILOG)
    status.add_argument("--db", **db)
    status.set_defaults(func=cmd_rollout)
    h = ro.add_parser("halt", help="stop a running rollout; offers not taken are withdrawn", epilog=EPILOG)
    h.add_argument("id", metavar="ID", type=int)
    h.add_argument("--db", **db)
    h.set_defaults(func=cmd_rollout)
