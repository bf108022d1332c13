"""contracts.bundle: a signed update bundle opens only intact, complete and signed by a trusted key."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.bundle import CONTEXT, Bundle, BundleError, Health, build_bundle, bundle_version, open_bundle
from contracts.errors import MessageError
from contracts.signing import key_id

KEY = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())
TRUSTED = {KID: KEY.public_key()}
FILES = {"health.py": b"raise SystemExit(0)\n", "lib/forecourt.txt": b"payload"}
HEALTH = Health(("python", "health.py"), 20)


def make(files: dict[str, bytes] = FILES, version: str = "1.1.0") -> bytes:
    return build_bundle(version, files, health=HEALTH, private_key=KEY)


def tar_of(members: list[tuple[str, bytes]], *, link: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return out.getvalue()


def members_of(raw: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [(i.name, tar.extractfile(i).read()) for i in tar]   # type: ignore[union-attr]


def test_a_bundle_opens_with_its_files_version_and_health() -> None:
    raw = make()
    assert open_bundle(raw, TRUSTED) == Bundle("1.1.0", FILES, HEALTH, KID)
    assert bundle_version(raw) == "1.1.0"


def test_the_same_files_make_the_same_bytes() -> None:
    assert make() == make()


def test_an_altered_file_is_refused() -> None:
    members = [(n, b"tampered" if n == "files/lib/forecourt.txt" else d) for n, d in members_of(make())]
    with pytest.raises(BundleError, match="does not match its digest"):
        open_bundle(tar_of(members), TRUSTED)


def test_a_file_the_manifest_does_not_list_is_refused() -> None:
    with pytest.raises(BundleError, match="does not list"):
        open_bundle(tar_of([*members_of(make()), ("files/extra.py", b"x")]), TRUSTED)


def test_a_listed_file_missing_is_refused() -> None:
    members = [(n, d) for n, d in members_of(make()) if n != "files/health.py"]
    with pytest.raises(BundleError, match="lacks files"):
        open_bundle(tar_of(members), TRUSTED)


def test_a_link_in_the_tar_is_refused() -> None:
    with pytest.raises(BundleError, match="not a file"):
        open_bundle(tar_of(members_of(make()), link="files/passwd"), TRUSTED)


def test_an_unknown_key_or_a_bad_signature_is_refused() -> None:
    with pytest.raises(BundleError, match="unknown key"):
        open_bundle(make(), {"0123456789abcdef": KEY.public_key()})
    other = {KID: Ed25519PrivateKey.generate().public_key()}
    with pytest.raises(BundleError, match="does not verify"):
        open_bundle(make(), other)


def test_a_manifest_signed_but_not_canonical_is_refused() -> None:
    members = dict(members_of(make()))
    body = json.dumps(json.loads(members["manifest.json"]), indent=1).encode()
    sig = base64.b64encode(KEY.sign(CONTEXT + body)).decode()
    members["manifest.json"] = body
    members["manifest.sig"] = json.dumps({"v": 1, "key_id": KID, "sig": sig}).encode()
    with pytest.raises(BundleError, match="canonical"):
        open_bundle(tar_of(list(members.items())), TRUSTED)


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs", "a/../b", "./x", "a//b", "a b"])
def test_a_path_leaving_the_release_directory_is_refused_when_built(path: str) -> None:
    with pytest.raises(BundleError, match="manifest is invalid"):
        make({path: b"x"})


def test_not_a_tar_is_a_bundle_error_and_a_message_error() -> None:
    with pytest.raises(BundleError, match="not a readable tar") as info:
        open_bundle(b"not a tar at all" * 64, TRUSTED)
    assert isinstance(info.value, MessageError)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096), st.integers(0, 4000))
def test_any_damage_is_a_bundle_error(noise: bytes, at: int) -> None:
    raw = bytearray(make())
    raw[at:at + len(noise)] = noise
    try:
        bundle = open_bundle(bytes(raw), TRUSTED)
    except BundleError:
        return
    assert bundle.files == FILES          # damage that left every signed byte intact (tar padding)


def test_a_sparse_member_claiming_gigabytes_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """GNU tar's sparse members pass isreg(): an 8 GiB "file" in 10 KiB of tar would be read into memory
    before the signature is checked (found by review)."""
    big = tmp_path / "payload"
    with open(big, "wb") as f:
        f.truncate(8 * 2**30)                       # a hole: no disk space used
    subprocess.run(["tar", "--sparse", "-cf", str(tmp_path / "b.tar"), "-C", str(tmp_path), "payload"],
                   check=True, timeout=60)
    raw = (tmp_path / "b.tar").read_bytes()
    assert len(raw) < 100_000
    with pytest.raises(BundleError):
        open_bundle(raw, TRUSTED)
    with pytest.raises(BundleError):
        bundle_version(raw)


@pytest.mark.parametrize("version", ["current", "update.json", "1.2.0.part", "1.2.0.tmp", ".hidden", "x1"])
def test_a_version_that_names_one_of_the_updaters_own_files_is_refused(version: str) -> None:
    with pytest.raises(MessageError):
        make(version=version)
