"""`forecourt release build --version V --dir SRC -o FILE --key K`: a signed update bundle."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError

__all__ = ["add_parsers", "cmd_build", "read_tree"]

EPILOG = "exit codes: 0 ok, 1 run failed, 2 usage or configuration error, 3 missing system component"


def read_tree(src: Path) -> dict[str, bytes]:
    """Every regular file under src by its relative path; a link or anything else is refused."""
    if not src.is_dir():
        raise ConfigError(f"--dir {src}: not a directory", key="--dir")
    files: dict[str, bytes] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ConfigError(f"--dir: {rel} is not a plain file or directory", key="--dir")
        if path.is_file():
            files[rel] = path.read_bytes()
    if not files:
        raise ConfigError(f"--dir {src}: no files", key="--dir")
    return files


def _signing_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"--key {path}: not a readable PEM private key", key="--key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"--key {path}: not an Ed25519 key", key="--key")
    return key


def cmd_build(args: argparse.Namespace) -> int:
    from contracts.bundle import BundleError, Health, build_bundle
    from contracts.signing import key_id

    command = tuple(shlex.split(args.health))
    if not command:
        raise ConfigError("--health must name a command", key="--health")
    files = read_tree(Path(args.dir))
    key = _signing_key(Path(args.key))
    try:
        raw = build_bundle(args.version, files, health=Health(command, args.deadline), private_key=key)
    except BundleError as exc:
        raise ConfigError(f"bundle not built: {exc}", key="--version") from exc
    try:
        Path(args.output).write_bytes(raw)
    except OSError as exc:
        raise ConfigError(f"--output {args.output}: cannot write ({exc.strerror})", key="--output") from exc
    print(f"{args.output}: release {args.version}, {len(files)} files, {len(raw)} bytes, "
          f"signed by {key_id(key.public_key())}")
    return 0


def _deadline(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 3600:
        raise argparse.ArgumentTypeError(f"deadline must be 1..3600 seconds, not {text!r}")
    return int(text)


def add_parsers(sub: Any) -> None:
    release = sub.add_parser("release", help="software releases: build a signed update bundle", epilog=EPILOG)
    rs = release.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    b = rs.add_parser("build", help="bundle a directory's files with a health check, signed", epilog=EPILOG)
    b.add_argument("--version", required=True, help="release version, e.g. 1.4.2")
    b.add_argument("--dir", required=True, help="the release's files")
    b.add_argument("--output", "-o", required=True, help="bundle file to write")
    b.add_argument("--key", required=True,
                   help="Ed25519 private key, PKCS#8 PEM (the registry's config-signing.key, "
                        "which terminals trust)")
    b.add_argument("--health", default="python health.py",
                   help="health command run in the release directory after the restart; 'python' is the "
                        "terminal's interpreter (default: python health.py)")
    b.add_argument("--deadline", type=_deadline, default=60,
                   help="seconds for the health command, and for broker and configuration (default 60)")
    b.set_defaults(func=cmd_build)
