"""`forecourt registry voucher issue|list|show|void|release` (registry.vouchers, registry.voucher_print).

`issue` books the vouchers, then writes their sheets (PNG per voucher, --pdf one PDF too) in --out: the
codes are on the sheets only, never printed here. Changes are audited with --actor (default $USER).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError
from forecourtcli.fleet import command, decimal_units, group, ident, now, ops, session, table

if TYPE_CHECKING:
    from registry.keys import RegistryKeys
    from registry.models import Voucher

__all__ = ["add_parsers"]

KEYS_FILE = "registry-keys.json"


def _expires(text: str) -> dt.date | None:
    if text == "none":
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD or none, not {text[:20]!r}") from exc


def _keys(args: argparse.Namespace) -> RegistryKeys:
    """The registry's keys; a directory without them is refused (new keys would make codes no terminal
    could redeem)."""
    from registry.keys import load_or_create_keys

    state = Path(args.state_dir)
    if not (state / KEYS_FILE).is_file():
        raise ConfigError(f"--state-dir {state} holds no {KEYS_FILE}: name the registry's state directory",
                          key="--state-dir")
    return load_or_create_keys(state / KEYS_FILE, Path(args.kek) if args.kek else None)


def _litres(volume_cl: int) -> str:
    from registry.voucher_print import litres

    return litres(volume_cl)


def cmd_issue(args: argparse.Namespace) -> int:
    from registry import vouchers
    from registry.models import Product
    from registry.voucher_print import write_sheets

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} must be a new or empty directory", key="--out")
    keys = _keys(args)
    with session(args.db) as s:
        made = vouchers.issue(s, keys, product=args.product, volume_cl=args.litres, count=args.count,
                              expires_on=args.expires, batch=args.batch, **ops(args))
        product = s.get(Product, args.product)
        name = product.name if product is not None else args.product
    first, last = made[0].voucher_id, made[-1].voucher_id
    try:
        written = write_sheets(made, out, product_name=name, pdf=args.pdf)
    except OSError as exc:
        raise ConfigError(f"vouchers {first}-{last} are issued but their sheets could not be written "
                          f"({exc.strerror}): void them", key="--out") from exc
    print(f"{len(made)} vouchers issued (ids {first}-{last}) for {_litres(args.litres)} {args.product}; "
          f"{len(written)} files in {out}")
    return 0


def _row(v: Voucher) -> list[str]:
    return [str(v.id), v.code_hint, v.product, _litres(v.volume_cl), v.status, v.batch or "-",
            v.issued_at.date().isoformat(), v.expires_on.isoformat() if v.expires_on else "-",
            v.redeemed_at.isoformat(timespec="seconds") if v.redeemed_at else "-", v.terminal or "-"]


HEADER = ["ID", "HINT", "PRODUCT", "LITRES", "STATUS", "BATCH", "ISSUED", "EXPIRES", "REDEEMED", "TERMINAL"]


def cmd_list(args: argparse.Namespace) -> int:
    from registry import vouchers

    with session(args.db) as s:
        rows = [_row(v) for v in vouchers.find(s, hint=args.hint, batch=args.batch, status=args.status,
                                               limit=args.limit)]
    print(table(HEADER, rows), end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from registry import vouchers

    if (args.id is None) == (args.hint is None):
        raise ConfigError("give a voucher id or --hint (the code's last 4 digits)", key="id")
    with session(args.db) as s:
        found = vouchers.find(s, voucher_id=args.id, hint=args.hint)
        rows = [_row(v) for v in found]
    if not rows:
        raise ConfigError("no such voucher", key="id" if args.id is not None else "hint")
    for row in rows:
        lines = (f"{label.lower():9} {value}\n" for label, value in zip(HEADER, row, strict=True))
        print("".join(lines), end="")
    return 0


def cmd_void(args: argparse.Namespace) -> int:
    from registry import vouchers

    with session(args.db) as s:
        vouchers.void(s, args.id, reason=args.reason, **ops(args))
    print(f"voucher {args.id}: void")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from registry import vouchers

    with session(args.db) as s:
        done = vouchers.release(s, args.id, terminal=args.terminal, now=now(), actor=ops(args)["actor"],
                                reason=args.reason)
    if not done:
        raise ConfigError(f"voucher {args.id} is not redeemed at terminal {args.terminal}", key="id")
    print(f"voucher {args.id}: usable again")
    return 0


def add_parsers(sub: Any) -> None:
    from registry.vouchers import MAX_COUNT

    g = group(sub, "voucher", "paper vouchers for litres: issue (sheets with code and QR), list, show, "
              "void, release")
    p = command(g, "issue", "new vouchers and their printable sheets", cmd_issue)
    p.add_argument("--product", required=True, help="the product code, e.g. diesel")
    p.add_argument("--litres", type=decimal_units, required=True, help="litres per voucher: 40 or 40.5")
    p.add_argument("--count", type=int, default=1, help=f"how many (1 to {MAX_COUNT})")
    p.add_argument("--expires", type=_expires, required=True, help="last valid day YYYY-MM-DD, or none")
    p.add_argument("--batch", default="", help="a label for the batch (at most 32 characters)")
    p.add_argument("--out", required=True, help="new or empty directory for the sheets (mode 0600 files)")
    p.add_argument("--pdf", action="store_true", help="also one PDF with a page per voucher")
    p.add_argument("--state-dir", default=".", help="the registry's state directory (its keys)")
    p.add_argument("--kek", default=None, help="key-encryption key file (default: STATE_DIR/kek.hex)")

    p = command(g, "list", "vouchers, newest first", cmd_list)
    p.add_argument("--hint", default=None, help="the code's last 4 digits")
    p.add_argument("--batch", default=None)
    p.add_argument("--status", choices=("issued", "redeemed", "void"), default=None)
    p.add_argument("--limit", type=ident, default=1000)

    p = command(g, "show", "one voucher by id, or those whose code ends in --hint", cmd_show)
    p.add_argument("id", metavar="ID", type=ident, nargs="?", default=None)
    p.add_argument("--hint", default=None, help="the code's last 4 digits")

    p = command(g, "void", "withdraw an issued voucher for good", cmd_void, reason=True, required=True)
    p.add_argument("id", metavar="ID", type=ident)

    p = command(g, "release", "make a voucher usable again when its sale dispensed nothing", cmd_release,
                reason=True, required=True)
    p.add_argument("id", metavar="ID", type=ident)
    p.add_argument("--terminal", required=True, help="the terminal that redeemed it")
