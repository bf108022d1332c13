"""registry.keyinject: a new device's PIN key and DUKPT initial key, derived from the registry's base keys
and sealed to the device key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contracts.errors import ConfigError
from contracts.sealbox import SealError, keys_context, open_sealed
from drivers.pinpad.dukpt_aes import derive_initial_key
from hostsim.bank_world import BDK, KEY_ID
from registry.keyinject import BDK_FILE, PIN_BASE_FILE, KeyInjector
from registry.keys import RegistryKeys

KEYS = RegistryKeys(bytes(32), bytes(32), bytes(range(32)))
RID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def write_bdk(state: Path, bdk: bytes = BDK) -> None:
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / BDK_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(bdk.hex().upper() + "\n")


@pytest.fixture
def injector(tmp_path: Path) -> KeyInjector:
    write_bdk(tmp_path)
    return KeyInjector.load(tmp_path)


def test_the_pin_base_key_is_made_once_private(tmp_path: Path) -> None:
    write_bdk(tmp_path)
    first = KeyInjector.load(tmp_path)
    assert (tmp_path / PIN_BASE_FILE).stat().st_mode & 0o777 == 0o600
    assert KeyInjector.load(tmp_path).pin_base == first.pin_base and len(first.pin_base) == 32


def test_pin_keys_are_per_device_and_derived_again(injector: KeyInjector) -> None:
    """HKDF-SHA256 (RFC 5869) of the base key, the device id in the info, computed independently."""
    expected = HKDF(algorithm=hashes.SHA256(), length=16, salt=None,
                    info=b"forecourt fleet pin key v1|T-0042").derive(injector.pin_base)
    assert injector.pin_key("T-0042") == expected
    assert injector.pin_key("T-0042") != injector.pin_key("T-0043")


def test_a_missing_or_readable_bdk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        KeyInjector.load(tmp_path)
    write_bdk(tmp_path)
    (tmp_path / BDK_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        KeyInjector.load(tmp_path)


def test_a_bdk_of_a_wrong_size_is_refused(tmp_path: Path) -> None:
    write_bdk(tmp_path, bytes(15))
    with pytest.raises(ConfigError, match="bits"):
        KeyInjector.load(tmp_path)


def test_the_bdk_id_is_its_cmac_check_value(injector: KeyInjector) -> None:
    """AES-CMAC of a zero block (X9.24-1-2017 Annex A); for one block with no padding CMAC is
    AES(K, 0 xor K1) (NIST SP 800-38B 6.2), checked here from the subkey."""
    enc = Cipher(algorithms.AES(BDK), modes.ECB()).encryptor()
    l_block = int.from_bytes(enc.update(bytes(16)), "big")
    k1 = ((l_block << 1) & (2**128 - 1)) ^ (0x87 if l_block >> 127 else 0)
    enc = Cipher(algorithms.AES(BDK), modes.ECB()).encryptor()
    assert injector.bdk_id() == enc.update(k1.to_bytes(16, "big"))[:4]


def test_new_key_ids_are_under_the_bdk_and_skip_taken_ones(injector: KeyInjector) -> None:
    seen: set[str] = set()
    for _ in range(30):
        key_id = injector.new_key_id(lambda k: k in seen)
        assert len(key_id) == 8 and key_id[:4] == injector.bdk_id()
        seen.add(key_id.hex().upper())
    assert len(seen) == 30
    with pytest.raises(ConfigError, match="no free"):
        injector.new_key_id(lambda k: True)


def test_sealed_keys_open_only_on_the_device_for_its_request(injector: KeyInjector) -> None:
    device = ec.generate_private_key(ec.SECP256R1())
    stored = KEYS.seal_device_key(injector.pin_key("T-0042"))
    box = injector.sealed_keys(KEYS, stored, KEY_ID, device.public_key(), device_id="T-0042", request_id=RID)
    doc = json.loads(open_sealed(device, box, context=keys_context("T-0042", RID)))
    assert doc == {"pin_key": injector.pin_key("T-0042").hex(),
                   "dukpt_initial_key": derive_initial_key(BDK, KEY_ID).hex(), "dukpt_key_id": KEY_ID.hex()}
    with pytest.raises(SealError):
        open_sealed(device, box, context=keys_context("T-0043", RID))
    with pytest.raises(SealError):
        open_sealed(ec.generate_private_key(ec.SECP256R1()), box, context=keys_context("T-0042", RID))


def test_the_initial_key_is_the_x9_24_3_vector(injector: KeyInjector) -> None:
    """ANSI X9.24-3-2017 supplement: BDK FEDCBA98..F1, IKID 1234567890123456 -> initial key
    1273671EA26AC29AFA4D1084127652A1 (the vector tests/test_dukpt_aes.py checks too)."""
    device = ec.generate_private_key(ec.SECP256R1())
    box = injector.sealed_keys(KEYS, KEYS.seal_device_key(bytes(16)), KEY_ID, device.public_key(),
                               device_id="T-1", request_id=RID)
    doc = json.loads(open_sealed(device, box, context=keys_context("T-1", RID)))
    assert doc["dukpt_initial_key"].upper() == "1273671EA26AC29AFA4D1084127652A1"


def test_no_key_shows_in_its_repr(injector: KeyInjector) -> None:
    assert injector.pin_base.hex() not in repr(injector) and BDK.hex() not in repr(injector).lower()
