"""Key files on the terminal: written atomically with mode 0600, and refused when other users can open them.

The terminal's own keys (card-token key, advice-store key) are made here on first start; the PIN key
(pek.hex) and the DUKPT initial key (dukpt.toml) are written by provisioning and checked here before
their loaders read them. A key file others can read is a leaked key: the terminal stops with a
ConfigError instead of using it (as OpenSSH refuses a private key with loose permissions).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from contracts.errors import ConfigError

__all__ = ["PRIVATE_MODE", "check_private", "load_or_create_key", "private_database", "read_key_file",
           "sync_dir", "write_key_file"]

PRIVATE_MODE = 0o600
_OPEN_TO_OTHERS = 0o077        # any right for the group or for others


def write_key_file(path: Path, text: str, *, replace: bool = True) -> None:
    """Write text to path with mode 0600, atomically: a reader sees the old file or the whole new one,
    never a part, and a crash leaves no half key. With replace=False an existing file is kept
    (FileExistsError), so two processes creating the same key cannot overwrite each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)              # whatever the umask says
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)                   # fails if path exists: create, never overwrite
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    """The rename survives a power cut only once the directory is on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse_if_open(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"key file {path} is not a regular file", path=str(path))
    if st.st_mode & _OPEN_TO_OTHERS:
        raise ConfigError(f"key file {path} can be read by other users (mode {st.st_mode & 0o777:04o}); "
                          "it must be 0600: re-provision the key or chmod 600 it", path=str(path))


def check_private(path: Path) -> Path:
    """path, after checking that it is a regular file only its owner may open (for loaders that read
    the file themselves)."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"key file not found: {path}; provision the terminal", path=str(path)) from exc
    _refuse_if_open(path, st)
    return path


def read_key_file(path: Path) -> str:
    """The text of a key file, checked on the open file itself (no swap between check and read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise ConfigError(f"key file not found: {path}; provision the terminal", path=str(path)) from exc
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as f:
        _refuse_if_open(path, os.fstat(f.fileno()))
        return f.read()


def load_or_create_key(path: Path, size: int = 32) -> bytes:
    """The key in path (hex); created with mode 0600 from the OS random source if absent."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):          # another process made it first: use theirs
            write_key_file(path, secrets.token_hex(size), replace=False)
    text = read_key_file(path)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ConfigError("key file is not hex", path=str(path)) from exc
    if len(key) != size:
        raise ConfigError("key file holds a key of the wrong size", path=str(path), expected=size)
    return key


def private_database(path: Path) -> Path:
    """Make an SQLite file (and its -wal and -shm) readable by its owner only, creating it empty if absent.

    SQLite gives the -wal and -shm files it creates the main file's mode, so they stay private too. The
    journal and the advice store hold no clear card data, but a sale's history is nobody else's business.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(each, PRIVATE_MODE)
    return path
