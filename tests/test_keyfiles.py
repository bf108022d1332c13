"""Key files on the terminal: written 0600 and atomically, refused when other users can read them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from firmware.config import load_config
from firmware.keyfile import check_private, load_or_create_key, read_key_file, write_key_file
from firmware.sale.journal import Journal
from firmware.terminal import run_terminal
from firmware.terminal.dukpt import load_dukpt
from hostsim.bank_world import KEY_ID, write_bank_files
from provisioning.keys import install_dukpt, install_pin_key

PEK = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")
IK = bytes(range(16))


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that lets everyone read new files (0644 is what write_text gave under the usual 022)."""
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_write_key_file_is_0600_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "k" / "a.key"
    write_key_file(path, "00" * 32)
    assert mode(path) == 0o600 and path.read_text() == "00" * 32
    assert [p.name for p in path.parent.iterdir()] == ["a.key"]      # no temporary file left behind


def test_write_key_file_replaces_a_loose_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "pek.hex"
    path.write_text("old\n")
    path.chmod(0o644)
    write_key_file(path, "new\n")
    assert mode(path) == 0o600 and path.read_text() == "new\n"


def test_write_key_file_without_replace_keeps_the_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    write_key_file(path, "first")
    with pytest.raises(FileExistsError):
        write_key_file(path, "second", replace=False)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["token.key"]


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_key_file_open_to_others_is_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "pek.hex"
    write_key_file(path, PEK.hex())
    path.chmod(loose)
    with pytest.raises(ConfigError, match="other users") as err:
        read_key_file(path)
    assert PEK.hex() not in str(err.value).lower()
    with pytest.raises(ConfigError, match="other users"):
        check_private(path)


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        check_private(tmp_path / "pek.hex")
    with pytest.raises(ConfigError, match="not found"):
        read_key_file(tmp_path / "pek.hex")


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "pek.hex").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="regular file"):
        check_private(tmp_path / "pek.hex")


def test_load_or_create_key_makes_a_private_key_once(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "token.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and mode(path) == 0o600
    assert load_or_create_key(path) == key


def test_load_or_create_key_refuses_a_readable_key(tmp_path: Path) -> None:
    path = tmp_path / "saf.key"
    load_or_create_key(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="other users"):
        load_or_create_key(path)


def test_load_or_create_key_racing_processes_agree(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_load_or_create_key_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    write_key_file(path, "zz")
    with pytest.raises(ConfigError, match="not hex"):
        load_or_create_key(path)
    write_key_file(path, "00" * 16)
    with pytest.raises(ConfigError, match="wrong size"):
        load_or_create_key(path)


# -- provisioning and the simulator write key files 0600 ---------------------------------------------------

def test_install_pin_key_and_dukpt_are_private(tmp_path: Path, loose_umask: None) -> None:
    pek = install_pin_key(tmp_path, PEK)
    dukpt = install_dukpt(tmp_path, IK, KEY_ID)
    assert mode(pek) == 0o600 and mode(dukpt) == 0o600
    assert bytes.fromhex(pek.read_text().strip()) == PEK
    journal = Journal(tmp_path / "journal.db")
    try:
        assert load_dukpt(dukpt, journal) is not None
    finally:
        journal.close()


def test_install_rejects_wrong_key_sizes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        install_pin_key(tmp_path, b"\x00" * 8)
    with pytest.raises(ConfigError):
        install_dukpt(tmp_path, IK, b"\x00" * 4)
    assert not list(tmp_path.iterdir())


def test_simulator_writes_the_dukpt_key_0600(tmp_path: Path, loose_umask: None) -> None:
    write_bank_files(tmp_path)
    assert mode(tmp_path / "dukpt.toml") == 0o600


# -- the terminal refuses key files others can read ----------------------------------------------------------

def test_dukpt_loader_refuses_a_readable_initial_key(tmp_path: Path) -> None:
    path = install_dukpt(tmp_path, IK, KEY_ID)
    path.chmod(0o644)
    journal = Journal(tmp_path / "journal.db")
    try:
        with pytest.raises(ConfigError, match="other users"):
            load_dukpt(path, journal)
    finally:
        journal.close()


def test_terminal_refuses_a_readable_pin_key(tmp_path: Path) -> None:
    install_pin_key(tmp_path, PEK).chmod(0o644)
    cfg_path = tmp_path / "terminal.toml"
    cfg_path.write_text('[terminal]\nid = "T-0001"\nstation = "ST-001"\n\n[mqtt]\nport = 9\n')
    cfg = load_config(cfg_path, profile="sim")
    with pytest.raises(ConfigError, match="other users"):
        run_terminal(cfg, threading.Event())
