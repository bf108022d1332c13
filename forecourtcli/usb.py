"""`forecourt usb ...`: the offline exchange on a USB stick, for a site without a link.

On the terminal: `export-sales` (every sale the registry has not acknowledged, encrypted to the registry
and signed with the device key), `import-config` (a signed configuration from the registry) and
`import-receipt` (the registry's signed answers: the sales it holds are marked synced). On the registry:
`import-sales` (checked, then stored once: a second import stores nothing and says so; --receipt; the chip
purse records in the same file are counted once too, registry.purse.bundle),
`export-config` (a device's signed configuration) and `bundle-key` (the registry's public bundle key, for a
terminal whose configuration does not name it yet). One top-level command rather than `forecourt
terminal ...` (which runs the terminal) and `forecourt registry ...`: the stick's four steps in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError

if TYPE_CHECKING:        # the commands import the registry lazily (a terminal has no database)
    from cryptography.hazmat.primitives.asymmetric import ec

    from registry.keys import RegistryKeys
    from registry.purse.records import IngestReport
    from registry.usbimport import ImportResult

__all__ = ["BundleImport", "add_parsers", "import_bundle", "write_file"]

EPILOG = ("exit codes: 0 ok (also: nothing new), 1 the bundle was refused (its reason is printed), "
          "2 usage or configuration error, 3 missing system component")
DB_HELP = "SQLAlchemy URL, e.g. sqlite:///registry.db"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _read(text: str, what: str) -> bytes:
    if text == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {text}: cannot read ({exc.strerror})", key=what) from exc


def write_file(path: Path, data: bytes) -> None:
    """Write a bundle whole or not at all (a stick pulled out mid-write leaves the old file or none)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot write ({exc.strerror})", key="-o") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _registry_key_file(text: str) -> Any:
    """An EC P-256 public key in a PEM file, checked as the one a configuration names."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from contracts.usbbundle import registry_key_from_b64, registry_key_to_b64

    try:
        key = serialization.load_pem_public_key(_read(text, "--registry-key"))
    except ValueError as exc:
        raise ConfigError(f"--registry-key {text}: not a PEM public key", key="--registry-key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"--registry-key {text}: not an EC P-256 key", key="--registry-key")
    return registry_key_from_b64(registry_key_to_b64(key))


def cmd_export_sales(args: argparse.Namespace) -> int:
    from firmware.config import load_config
    from firmware.configstore import ConfigStore
    from firmware.usbexport import export_sales, load_identity, registry_key

    cfg = load_config(args.config)
    state = cfg.state_dir
    if args.registry_key:
        registry = _registry_key_file(args.registry_key)
    else:
        registry = registry_key(ConfigStore(state, terminal=cfg.terminal.id).current)
    device_key, cert_pem = load_identity(state / cfg.mqtt.key, state / cfg.mqtt.cert)
    journal = _journal(state)
    try:
        out = export_sales(journal, terminal=cfg.terminal.id, station=cfg.terminal.station,
                           device_key=device_key, certificate_pem=cert_pem, registry=registry, now=_now())
    finally:
        journal.close()
    write_file(Path(args.output), out.data)
    records = f" and {out.records} chip purse records" if out.records else ""
    print(f"{out.count} sales{records} not yet acknowledged by the registry exported to {args.output}"
          + (f"; {out.skipped} left out (they do not encode: see the log)" if out.skipped else ""))
    return 0


def cmd_import_config(args: argparse.Namespace) -> int:
    from firmware.config import load_config
    from firmware.configstore import ConfigStore
    from firmware.usbimport import import_config

    cfg = load_config(args.config)
    store = ConfigStore(cfg.state_dir, terminal=cfg.terminal.id)
    result = import_config(store, _read(args.file, "FILE"), terminal=cfg.terminal.id, now=_now())
    if result.status == "unchanged":
        print(f"configuration version {result.version} is the one running: nothing changed")
    else:
        print(f"configuration version {result.version} installed (the terminal reads it when it starts)")
    return 0


def cmd_import_receipt(args: argparse.Namespace) -> int:
    from firmware.config import load_config
    from firmware.configstore import load_config_keys
    from firmware.usbimport import import_receipt

    cfg = load_config(args.config)
    raw = _read(args.file, "FILE")
    journal = _journal(cfg.state_dir)
    try:
        got = import_receipt(journal, raw, terminal=cfg.terminal.id, trusted=load_config_keys(cfg.state_dir))
    finally:
        journal.close()
    print(f"{got.synced} sales synced, {got.parked} parked (rejected by the registry), {got.released} "
          f"releases answered, {got.already} acknowledged before, {got.unknown} unknown here")
    return 0


def _journal(state: Path) -> Any:
    from firmware.sale.journal import Journal

    path = state / "journal.db"
    if not path.exists():
        raise ConfigError(f"no journal at {path}: is --config the terminal's?", key="--config")
    return Journal(path)


def _sessions(url: str) -> Any:
    from registry.db import database_url, open_database

    database_url(url, key="--db")
    return open_database(url)


KEYS_FILE = "registry-keys.json"      # the registry's card-token and PIN-verifier keys (registry.server)


def _registry_key(state_dir: str, name: str) -> Path:
    """The registry's state directory when it holds the key `name`: never a new key made in a wrong
    directory (a configuration signed by a key no terminal trusts, a bundle key no terminal has)."""
    state = Path(state_dir)
    if not (state / name).is_file():
        raise ConfigError(f"--state-dir {state} holds no {name}: name the registry's state directory",
                          key="--state-dir")
    return state


def cmd_import_sales(args: argparse.Namespace) -> int:
    from registry.keys import load_or_create_keys
    from registry.usbimport import BUNDLE_KEY, receipt

    ca_path = Path(args.tls_dir) / "ca.pem"
    try:
        ca_pem = ca_path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tls-dir: no CA certificate at {ca_path}", key="--tls-dir") from exc
    raw = _read(args.file, "FILE")
    _registry_key(args.state_dir, BUNDLE_KEY)
    # the registry's keys open an offline fleet sale's card number, so its account is debited
    keys = load_or_create_keys(_registry_key(args.state_dir, KEYS_FILE) / KEYS_FILE,
                               Path(args.kek) if args.kek else None)
    got = import_bundle(args.db, Path(args.state_dir), raw, ca_pem=ca_pem, keys=keys, now=_now())
    print(got.sales.summary())
    print(got.purse_summary())
    if args.receipt:
        write_file(Path(args.receipt), receipt(got.sales, Path(args.state_dir), now=_now()))
        print(f"receipt for the terminal written to {args.receipt}")
    return 1 if got.sales.failed or got.purse_failed else 0


@dataclasses.dataclass(frozen=True)
class BundleImport:
    """What `usb import-sales` did with one file: its sales, and its chip purse records."""

    sales: ImportResult
    records: int = 0             # chip purse records in the file
    purse: IngestReport | None = None      # None: no records in the file, or not stored this time

    @property
    def purse_failed(self) -> bool:
        """The records were not stored this time (the database was busy): import the file again."""
        return bool(self.records) and self.purse is None

    def purse_summary(self) -> str:
        p = self.purse
        if not self.records:
            return "no chip purse records in the bundle"
        if p is None:
            return (f"{self.records} chip purse records not stored this time (the database is busy): "
                    "import the bundle again")
        flagged = ", ".join(f"{name} {n}" for name, n in sorted(p.flags.items()))
        head = (f"{self.records} chip purse records, "
                + (f"{p.counted} counted" if p.counted or p.stored else "nothing new"))
        return (f"{head} (stored {p.stored}, already received {p.duplicate}"
                + (f"; flagged: {flagged})" if flagged else ")"))


def _lines(raw: bytes, bundle_key: ec.EllipticCurvePrivateKey) -> tuple[int, int]:
    """Sales and chip purse records in a bundle the sales import has already checked."""
    from contracts.purse_messages import PURSE_RECORDS, decode, is_purse_line
    from contracts.usbbundle import decode_sales_bundle, open_lines

    lines = open_lines(decode_sales_bundle(raw), bundle_key)
    purse = [decode(line, PURSE_RECORDS) for line in lines if is_purse_line(line)]
    return len(lines) - len(purse), sum(len(doc["items"]) for doc in purse)


def import_bundle(db: str, state_dir: Path, raw: bytes, *, ca_pem: str, keys: RegistryKeys,
                  now: dt.datetime) -> BundleImport:
    """The registry's import of a terminal's bundle file: its sales (registry.usbimport.import_sales), then
    its chip purse records (registry.purse.bundle.import_purse_records), each stored once. The purse
    issuer's keys are loaded only for a file that carries records (loading makes them on first use)."""
    from sqlalchemy.exc import OperationalError

    from registry.purse.bundle import import_purse_records
    from registry.purse.issuer import IssuerKeys
    from registry.usbimport import import_sales, load_or_create_bundle_key

    key = load_or_create_bundle_key(state_dir)
    engine, sessions = _sessions(db)
    try:
        with sessions() as s:
            sales = import_sales(s, raw, bundle_key=key, ca_pem=ca_pem, now=now, keys=keys)
        count, records = _lines(raw, key)
        # the header's count counts every line, records too: the summary names the sales alone
        sales = dataclasses.replace(sales, count=count)
        if not records:
            return BundleImport(sales)
        with sessions() as s:
            try:
                issuer = IssuerKeys.load(s, keys, now=now)
                report = import_purse_records(s, raw, issuer=issuer, bundle_key=key, ca_pem=ca_pem, now=now)
                s.commit()
            except OperationalError as exc:
                if "locked" not in str(exc.orig):
                    raise
                s.rollback()                # SQLite busy past its timeout: nothing of this step stored
                return BundleImport(sales, records)
        return BundleImport(sales, records, report)
    finally:
        engine.dispose()


def cmd_export_config(args: argparse.Namespace) -> int:
    from registry.configs import KEY_FILE, ConfigIssuer
    from registry.usbimport import export_config

    issuer = ConfigIssuer(_registry_key(args.state_dir, KEY_FILE))
    engine, sessions = _sessions(args.db)
    try:
        with sessions() as s:
            data = export_config(s, args.device, issuer=issuer, now=_now())
    finally:
        engine.dispose()
    write_file(Path(args.output), data)
    print(f"configuration of {args.device} written to {args.output}")
    return 0


def cmd_bundle_key(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from registry.usbimport import load_or_create_bundle_key

    public = load_or_create_bundle_key(Path(args.state_dir)).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if args.output == "-":
        sys.stdout.write(pem.decode("ascii"))
    else:
        write_file(Path(args.output), pem)
    return 0


def add_parsers(sub: Any) -> None:
    usb = sub.add_parser("usb", help="offline exchange on a USB stick: sales out, configuration in",
                         epilog=EPILOG)
    usub = usb.add_subparsers(dest="usb_command", required=True, metavar="COMMAND")

    e = usub.add_parser("export-sales", help="terminal: unacknowledged sales to a bundle file", epilog=EPILOG)
    e.add_argument("--config", required=True, help="terminal TOML configuration")
    e.add_argument("-o", "--output", required=True, help="the bundle file to write")
    e.add_argument("--registry-key", default=None,
                   help="the registry's bundle key (PEM, from `forecourt usb bundle-key`) when the "
                        "configuration the terminal runs names none")
    e.set_defaults(func=cmd_export_sales)

    c = usub.add_parser("import-config", help="terminal: a signed configuration from a bundle file",
                        epilog=EPILOG)
    c.add_argument("--config", required=True, help="terminal TOML configuration")
    c.add_argument("file", metavar="FILE", help="the configuration bundle, - for stdin")
    c.set_defaults(func=cmd_import_config)

    i = usub.add_parser("import-sales", help="registry: store the sales and chip purse records of a bundle "
                        "file (once)",
                        epilog=EPILOG)
    i.add_argument("--db", required=True, help=DB_HELP)
    i.add_argument("--state-dir", required=True, help="the registry's state directory (its bundle key)")
    i.add_argument("--tls-dir", required=True, help="the certificate authority's directory (its ca.pem)")
    i.add_argument("--kek", default=None, help="the registry's key-encryption key file (default: "
                   "STATE_DIR/kek.hex)")
    i.add_argument("--receipt", default=None,
                   help="also write the registry's signed answers here (for `usb import-receipt`)")
    i.add_argument("file", metavar="FILE", help="the sales bundle, - for stdin")
    i.set_defaults(func=cmd_import_sales)

    r = usub.add_parser("import-receipt", help="terminal: mark the sales a registry receipt acknowledges",
                        epilog=EPILOG)
    r.add_argument("--config", required=True, help="terminal TOML configuration")
    r.add_argument("file", metavar="FILE", help="the receipt, - for stdin")
    r.set_defaults(func=cmd_import_receipt)

    x = usub.add_parser("export-config", help="registry: a device's signed configuration to a bundle file",
                        epilog=EPILOG)
    x.add_argument("--db", required=True, help=DB_HELP)
    x.add_argument("--state-dir", required=True, help="the registry's state directory (its signing key)")
    x.add_argument("--device", required=True, help="the device id")
    x.add_argument("-o", "--output", required=True, help="the bundle file to write")
    x.set_defaults(func=cmd_export_config)

    k = usub.add_parser("bundle-key", help="registry: its public bundle key (PEM)", epilog=EPILOG)
    k.add_argument("--state-dir", required=True, help="the registry's state directory")
    k.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    k.set_defaults(func=cmd_bundle_key)
