"""The software update bundle: a tar of files plus a signed manifest (docs/updates.md).

Members, in this order: ``manifest.json`` (canonical JSON: version, the SHA-256 of every file, the health
check), ``manifest.sig`` (key id and Ed25519 signature over the manifest's exact bytes, contracts.signing)
and ``files/<path>`` for each file. Reading checks the signature first, then that the files are exactly
those the manifest lists with those digests; anything else (a link, a device node, ``..``, a duplicate,
an unlisted file) is refused with BundleError. Pure: bytes in, bytes out.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from contracts.signing import key_id
>>> key = Ed25519PrivateKey.generate()
>>> raw = build_bundle("1.2.0", {"bin/run.py": b"print(1)"}, health=Health(("python", "bin/run.py"), 30),
...                    private_key=key)
>>> open_bundle(raw, {key_id(key.public_key()): key.public_key()}).files["bin/run.py"]
b'print(1)'
>>> open_bundle(raw, {"other": key.public_key()})
Traceback (most recent call last):
    ...
contracts.bundle.BundleError: bundle signed by an unknown key (key_id=...)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import MessageError
from contracts.signing import SignatureError, key_id, sign_bytes, verify_bytes

__all__ = ["CONTEXT", "MAX_BUNDLE", "Bundle", "BundleError", "Health", "build_bundle", "bundle_version",
           "open_bundle"]

MANIFEST, SIGNATURE, FILES = "manifest.json", "manifest.sig", "files/"
CONTEXT = b"forecourt update bundle v1\n"      # contracts.signing: a signature made for this use only
MAX_BUNDLE = 256 * 2**20          # the largest size an UPDATE_OFFER may announce
MAX_FILES = 5000
MAX_MANIFEST = 2 * 2**20

_PATH = re.compile(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+){0,15}")
_VERSION = d.VERSION          # a software version, as the wire's
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARG = re.compile(r"[^\x00-\x1f]{1,200}")


class BundleError(MessageError):
    """An update bundle that is malformed, altered or signed by a key not trusted."""


@dataclass(frozen=True)
class Health:
    """The release's own health check: a command run in the release directory ("python" as its first word
    is the interpreter the terminal runs on), passing when it exits 0 within deadline_s seconds."""

    command: tuple[str, ...]
    deadline_s: int


@dataclass(frozen=True)
class Bundle:
    version: str
    files: Mapping[str, bytes]
    health: Health
    key_id: str


def _files_check(v: Any) -> bool:
    return isinstance(v, dict) and 0 < len(v) <= MAX_FILES and all(
        isinstance(p, str) and _PATH.fullmatch(p) is not None and len(p) <= 200
        and isinstance(h, str) and _SHA256.fullmatch(h) is not None for p, h in v.items())


def _health_check(v: Any) -> bool:
    return (isinstance(v, dict) and set(v) == {"command", "deadline_s"}
            and isinstance(v["command"], list) and 1 <= len(v["command"]) <= 16
            and all(isinstance(a, str) and _ARG.fullmatch(a) for a in v["command"])
            and type(v["deadline_s"]) is int and 1 <= v["deadline_s"] <= 3600)


MANIFEST_SCHEMA: Mapping[str, m.Check] = {
    "version": m.matching(_VERSION), "files": _files_check, "health": _health_check,
}
SIGNATURE_SCHEMA: Mapping[str, m.Check] = {
    "key_id": m.matching(r"[a-z0-9][a-z0-9-]{0,31}"), "sig": m.matching(r"[A-Za-z0-9+/]{1,200}={0,2}"),
}


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0      # reproducible: same files, same bytes
    tar.addfile(info, io.BytesIO(data))


def build_bundle(version: str, files: Mapping[str, bytes], *, health: Health,
                 private_key: Ed25519PrivateKey) -> bytes:
    """The bundle of `files` (relative path -> content) as release `version`, signed with private_key
    (named by its key id, contracts.signing.key_id)."""
    manifest = {"version": version, "files": {p: hashlib.sha256(b).hexdigest() for p, b in files.items()},
                "health": {"command": list(health.command), "deadline_s": health.deadline_s}}
    try:
        body = m.encode(manifest, MANIFEST_SCHEMA)
        sig = m.encode({"key_id": key_id(private_key.public_key()),
                        "sig": sign_bytes(body, private_key, context=CONTEXT)}, SIGNATURE_SCHEMA)
    except MessageError as exc:
        raise BundleError("bundle manifest is invalid", **exc.context) from exc
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, MANIFEST, body)
        _member(tar, SIGNATURE, sig)
        for path in sorted(files):
            _member(tar, FILES + path, files[path])
    return out.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    """Every regular file of the tar by name; BundleError for anything else in it."""
    if len(data) > MAX_BUNDLE:
        raise BundleError("bundle too large", size=len(data))
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if not info.isreg() or info.sparse is not None:
                    # a sparse member "holds" gigabytes in a few bytes of tar: read, it fills the memory
                    raise BundleError("bundle holds something that is not a file", member=info.name[:80])
                total += info.size
                if total > len(data):
                    raise BundleError("bundle members are larger than the bundle", member=info.name[:80])
                if info.name in found or len(found) > MAX_FILES + 2:
                    raise BundleError("bundle holds a file twice", member=info.name[:80])
                fileobj = tar.extractfile(info)
                if fileobj is None:
                    raise BundleError("bundle member unreadable", member=info.name[:80])
                found[info.name] = fileobj.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError("bundle is not a readable tar") from exc
    return found


def _manifest(body: bytes) -> dict[str, Any]:
    """The manifest's fields; it must be in the canonical form it was signed in."""
    if len(body) > MAX_MANIFEST:
        raise BundleError("bundle manifest too large", size=len(body))
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise BundleError("bundle manifest is not a JSON object")
        doc.pop("v", None)
        if m.encode(doc, MANIFEST_SCHEMA) != body:
            raise BundleError("bundle manifest is not in canonical form")
    except (ValueError, RecursionError) as exc:      # MessageError is a ValueError
        if isinstance(exc, BundleError):
            raise
        raise BundleError("bundle manifest is invalid", **getattr(exc, "context", {})) from exc
    return doc


def open_bundle(data: bytes, trusted: Mapping[str, Ed25519PublicKey]) -> Bundle:
    """The checked content of a bundle: signed by a trusted key, every file listed and intact."""
    members = _members(data)
    body, sig_doc = members.pop(MANIFEST, None), members.pop(SIGNATURE, None)
    if body is None or sig_doc is None:
        raise BundleError("bundle lacks its manifest or signature")
    try:
        sig = m.decode(sig_doc, SIGNATURE_SCHEMA)
    except MessageError as exc:
        raise BundleError("bundle signature is malformed", **exc.context) from exc
    if sig["key_id"] not in trusted:
        raise BundleError("bundle signed by an unknown key", key_id=sig["key_id"])
    try:
        verify_bytes(body, sig["sig"], sig["key_id"], trusted, context=CONTEXT)
    except SignatureError as exc:
        raise BundleError("bundle signature does not verify", key_id=sig["key_id"]) from exc
    doc = _manifest(body)
    files: dict[str, bytes] = {}
    for name, content in members.items():
        path = name[len(FILES):] if name.startswith(FILES) else None
        if path is None or path not in doc["files"]:
            raise BundleError("bundle holds a file its manifest does not list", member=name[:80])
        if hashlib.sha256(content).hexdigest() != doc["files"][path]:
            raise BundleError("bundle file does not match its digest", member=path[:80])
        files[path] = content
    missing = sorted(set(doc["files"]) - set(files))
    if missing:
        raise BundleError("bundle lacks files its manifest lists", member=missing[0][:80])
    health = Health(tuple(doc["health"]["command"]), doc["health"]["deadline_s"])
    return Bundle(doc["version"], files, health, sig["key_id"])


def bundle_version(data: bytes) -> str:
    """The version a bundle's manifest names, read without checking anything (for messages only)."""
    members = _members(data)
    body = members.get(MANIFEST)
    try:
        doc = json.loads(body) if body is not None and len(body) <= MAX_MANIFEST else None
    except ValueError as exc:              # not JSON, or not UTF-8
        raise BundleError("bundle names no version") from exc
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or re.fullmatch(_VERSION, version) is None:
        raise BundleError("bundle names no version")
    return version
