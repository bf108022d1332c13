"""drivers.pinpad: PIN collection into an ISO 9564-1 format 4 (AES) PIN block, checked with psec."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psec.pinblock import decipher_pinblock_iso_4

from contracts.errors import ConfigError, PinPadError
from drivers.pinpad import PinEntryCancelled, PinPad, load_pin_key

KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")     # the seed device's test key
PAN = "7077001000000019"


class Keys:
    """A key source that replays keys; None means 'no key within the timeout'."""

    def __init__(self, keys: Iterable[str | None]) -> None:
        self.keys = list(keys)
        self.timeouts: list[float] = []

    def read_key(self, timeout: float) -> str | None:
        self.timeouts.append(timeout)
        if not self.keys:
            time.sleep(min(timeout, 0.01))
            return None
        return self.keys.pop(0)


def entry(*keys: str | None) -> Keys:
    return Keys(keys)


def digits(pin: str) -> list[str]:
    return list(pin)


def read(keys: Keys, pan: str = PAN, timeout: float = 5.0, key: bytes = KEY) -> tuple[bytes, list[int]]:
    seen: list[int] = []
    block = PinPad(keys, key).read_pin_block(pan, timeout, seen.append)
    return block, seen


@pytest.mark.parametrize("pin", ["1234", "0000", "987654", "123456789012"])
def test_block_deciphers_to_the_pin(pin: str) -> None:
    block, _ = read(entry(*digits(pin), "ENTER"))
    assert isinstance(block, bytes) and len(block) == 16
    assert decipher_pinblock_iso_4(KEY, block, PAN) == pin


def test_block_is_bound_to_key_and_pan() -> None:
    block, _ = read(entry(*"1234", "ENTER"))
    other_key = bytes(16)
    for key, pan in ((other_key, PAN), (KEY, "7077001000000027")):
        try:
            got = decipher_pinblock_iso_4(key, block, pan)
        except ValueError:
            continue
        assert got != "1234"


@pytest.mark.parametrize("key_len", [16, 24, 32])
def test_aes_key_sizes(key_len: int) -> None:
    key = bytes(range(key_len))
    block, _ = read(entry(*"4321", "ENTER"), key=key)
    assert decipher_pinblock_iso_4(key, block, PAN) == "4321"


def test_19_digit_pan() -> None:
    pan = "7083123456789012346"
    block, _ = read(entry(*"2468", "ENTER"), pan=pan)
    assert decipher_pinblock_iso_4(KEY, block, pan) == "2468"


def test_clear_resets_the_digits() -> None:
    block, seen = read(entry("9", "9", "9", "CLEAR", *"1234", "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "1234"
    assert seen == [1, 2, 3, 0, 1, 2, 3, 4]


def test_on_digits_counts_each_key() -> None:
    _, seen = read(entry(*"12345", "ENTER"))
    assert seen == [1, 2, 3, 4, 5]          # the accepted ENTER returns without a callback


def test_none_keys_are_waited_through() -> None:
    keys = entry(None, "1", None, None, "2", "3", None, "4", "ENTER")
    block, seen = read(keys)
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "1234"
    assert seen == [1, 2, 3, 4]
    assert all(0 < t <= 0.5 for t in keys.timeouts)      # polls in slices of at most half a second


def test_fewer_than_four_digits_then_enter_is_ignored() -> None:
    block, seen = read(entry(*"123", "ENTER", "4", "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "1234"
    assert seen == [1, 2, 3, 3, 4]


def test_enter_alone_is_ignored() -> None:
    block, _ = read(entry("ENTER", "ENTER", *"5555", "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "5555"


def test_more_than_twelve_digits_are_capped() -> None:
    block, seen = read(entry(*"1234567890123456", "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "123456789012"
    assert seen == list(range(1, 13)) + [12, 12, 12, 12]


@pytest.mark.parametrize("noise", ["*", "#", "F1", "", " ", "UP"])
def test_other_keys_are_ignored(noise: str) -> None:
    block, seen = read(entry("1", noise, "2", "3", "4", "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == "1234"
    assert seen == [1, 1, 2, 3, 4]


@pytest.mark.parametrize("keys", [["CANCEL"], ["1", "2", "CANCEL"], [*"1234", "CANCEL", "ENTER"]])
def test_cancel_raises(keys: list[str]) -> None:
    with pytest.raises(PinEntryCancelled, match="cancelled"):
        read(entry(*keys))


def test_cancelled_is_a_pinpad_error() -> None:
    assert issubclass(PinEntryCancelled, PinPadError)


def test_timeout_raises_quickly() -> None:
    keys = entry("1", "2")        # then nothing
    t0 = time.monotonic()
    with pytest.raises(PinEntryCancelled, match="timed out"):
        read(keys, timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.5
    assert all(t <= 0.3 + 1e-6 for t in keys.timeouts)


def test_zero_timeout_raises_without_reading() -> None:
    keys = entry(*"1234", "ENTER")
    with pytest.raises(PinEntryCancelled):
        read(keys, timeout=0)
    assert keys.timeouts == []


def test_digit_buffer_is_wiped_after_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import drivers.pinpad.pinpad as mod

    buffers: list[bytearray] = []
    real = mod._wipe

    def spy(buf: bytearray) -> None:
        buffers.append(buf)
        real(buf)

    monkeypatch.setattr(mod, "_wipe", spy)
    read(entry(*"1234", "ENTER"))
    assert buffers and all(not any(b) for b in buffers)
    with pytest.raises(PinEntryCancelled):
        read(entry(*"5678", "CANCEL"))
    assert all(not any(b) for b in buffers)


def test_same_pin_twice_gives_different_blocks() -> None:
    # format 4 fills the plain PIN field with random nibbles (ISO 9564-1:2017, 9.4.2)
    a, _ = read(entry(*"1234", "ENTER"))
    b, _ = read(entry(*"1234", "ENTER"))
    assert a != b
    assert decipher_pinblock_iso_4(KEY, a, PAN) == decipher_pinblock_iso_4(KEY, b, PAN) == "1234"


@settings(max_examples=40, deadline=None)
@given(pin=st.from_regex(r"[0-9]{4,12}", fullmatch=True),
       noise=st.lists(st.sampled_from(["CLEAR", "ENTER", "x"]), max_size=3))
def test_any_pin_round_trips(pin: str, noise: list[str]) -> None:
    # noise typed first, then CLEAR, then the PIN
    block, seen = read(entry(*noise, "CLEAR", *pin, "ENTER"))
    assert decipher_pinblock_iso_4(KEY, block, PAN) == pin
    assert seen[-len(pin):] == list(range(1, len(pin) + 1))


# -- the key file -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [16, 24, 32])
def test_load_pin_key(tmp_path: Path, size: int) -> None:
    path = tmp_path / "pek.hex"
    key = bytes(range(1, size + 1))
    path.write_text(key.hex().upper() + "\n")
    assert load_pin_key(path) == key


def test_load_pin_key_missing(tmp_path: Path) -> None:
    path = tmp_path / "pek.hex"
    with pytest.raises(ConfigError, match="not found") as info:
        load_pin_key(path)
    assert info.value.context == {"path": str(path)}


@pytest.mark.parametrize("text", ["not hex at all", "8B2F4E01A7C3D95E6F1028374C5D6E7",
                                  "0x8B2F4E01A7C3D95E6F1028374C5D6E7F", "8B2F4E01A7C3D95E6F1028374C5D6E7G"])
def test_load_pin_key_not_hex(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pek.hex"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not hex"):
        load_pin_key(path)


@pytest.mark.parametrize("size", [0, 8, 15, 17, 20, 33, 48])
def test_load_pin_key_wrong_length(tmp_path: Path, size: int) -> None:
    path = tmp_path / "pek.hex"
    path.write_text("AB" * size)
    with pytest.raises(ConfigError, match="16, 24 or 32") as info:
        load_pin_key(path)
    assert "AB" not in str(info.value)           # the key material is never echoed


# -- bank PINs: AES DUKPT online blocks and the offline format 2 block ------------------------------------

def test_dukpt_pin_block_decrypts_with_the_host_derived_key() -> None:
    from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key, host_derive_working_key
    from drivers.pinpad.pinpad import PinPad as Pad

    # ANSI X9.24-3-2017 supplement: BDK and initial key ID of its test vectors
    bdk = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
    ikid = bytes.fromhex("1234567890123456")
    dukpt = TerminalDukpt(derive_initial_key(bdk, ikid), ikid)
    pad = Pad(_Keys("4", "3", "2", "1", "ENTER", "9", "9", "9", "9", "ENTER"), bytes(16), dukpt)
    pan = "4761739001010010"
    ksn1, block1 = pad.read_dukpt_pin_block(pan, 5, fmt="iso4-aes")
    ksn2, block2 = pad.read_dukpt_pin_block(pan, 5, fmt="iso4-aes")
    assert ksn1 != ksn2 and ksn1[:8] == ikid
    from psec.pinblock import decipher_pinblock_iso_4
    assert decipher_pinblock_iso_4(host_derive_working_key(bdk, ksn1, "pin_encryption"),
                                   block1, pan) == "4321"
    assert decipher_pinblock_iso_4(host_derive_working_key(bdk, ksn2, "pin_encryption"),
                                   block2, pan) == "9999"


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # psec's TDES name
def test_dukpt_format_0_block_is_under_the_published_2tdea_working_key() -> None:
    """The default block: ISO 9564-1 format 0 under the 2TDEA PIN key derived from the AES-128 initial key.
    Supplement to ANSI X9.24-3-2017 Test Vectors (2018-01-29): AES-128 BDK FEDCBA98..F1F1, IKID
    1234567890123456, counter 1, 2TDEA PIN-encryption working key 630C706D9546E47D4449313F61C4D4AB (as in
    tests/test_dukpt_aes.py). The TDEA step is checked with psec's own TDES, not the pad's cipher."""
    from psec.des import decrypt_tdes_ecb, encrypt_tdes_ecb
    from psec.pinblock import decode_pinblock_iso_0, encode_pinblock_iso_0

    from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key, host_derive_working_key
    from drivers.pinpad.pinpad import PinPad as Pad

    bdk = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
    ikid = bytes.fromhex("1234567890123456")
    published = bytes.fromhex("630C706D9546E47D4449313F61C4D4AB")
    pan = "4111111111111111"
    pad = Pad(_Keys("1", "2", "3", "4", "ENTER", "5", "6", "7", "8", "9", "ENTER"), bytes(16),
              TerminalDukpt(derive_initial_key(bdk, ikid), ikid))
    ksn, block = pad.read_dukpt_pin_block(pan, 5)
    assert ksn == ikid + bytes.fromhex("00000001") and len(block) == 8
    assert block == encrypt_tdes_ecb(published, encode_pinblock_iso_0("1234", pan))
    assert decode_pinblock_iso_0(decrypt_tdes_ecb(published, block), pan) == "1234"
    ksn2, block2 = pad.read_dukpt_pin_block(pan, 5, fmt="iso0-tdea2")
    host_key = host_derive_working_key(bdk, ksn2, "pin_encryption", "TDEA2")
    assert ksn2[-4:] == bytes.fromhex("00000002") and host_key != published
    assert decode_pinblock_iso_0(decrypt_tdes_ecb(host_key, block2), pan) == "56789"


def test_dukpt_pin_block_of_an_unknown_format_is_refused_before_entry() -> None:
    from drivers.pinpad.dukpt_aes import TerminalDukpt
    from drivers.pinpad.pinpad import PinPad as Pad

    keys = _Keys("1", "2", "3", "4", "ENTER")
    dukpt = TerminalDukpt(bytes(16), bytes(8))
    with pytest.raises(PinPadError, match="format"):
        Pad(keys, bytes(16), dukpt).read_dukpt_pin_block("4761739001010010", 5, fmt="iso1")
    assert dukpt.counter == 1                # no key was used


@pytest.mark.parametrize("odd", ["12", "\u0664", "\x00", ""])
def test_a_key_that_is_not_one_ascii_digit_is_ignored(odd: str) -> None:
    """Defect (fuzz target pinpad_keys): "12" raised TypeError from ord(), an Arabic-Indic digit (isdigit()
    is true) raised ValueError; a key source's odd key is now ignored like any unknown key."""
    from drivers.pinpad.pinpad import PinPad as Pad

    pad = Pad(_Keys("1", odd, "2", "3", "4", "ENTER"), bytes(16))
    assert bytes(pad.read_offline_pin(5)) == bytes.fromhex("241234FFFFFFFFFF")


def test_offline_pin_is_an_iso_format_2_block() -> None:
    from drivers.pinpad.pinpad import PinPad as Pad

    pad = Pad(_Keys("1", "2", "3", "4", "5", "ENTER"), bytes(16))
    # ISO 9564-1 format 2: C=2, N=5, PIN digits, F filler (EMV Book 3 6.5.12)
    assert bytes(pad.read_offline_pin(5)) == bytes.fromhex("2512345FFFFFFFFF")


def test_dukpt_block_without_dukpt_key_is_a_pin_pad_error() -> None:
    from contracts.errors import PinPadError
    from drivers.pinpad.pinpad import PinPad as Pad

    with pytest.raises(PinPadError):
        Pad(_Keys("1", "2", "3", "4", "ENTER"), bytes(16)).read_dukpt_pin_block("4761739001010010", 5)


class _Keys:
    def __init__(self, *keys: str) -> None:
        self._keys = list(keys)

    def read_key(self, timeout: float) -> str | None:
        return self._keys.pop(0) if self._keys else None


def test_clear_with_no_digit_gives_more_time_capped() -> None:
    pad = PinPad(entry("CLEAR", None, None, None, None, None, None, None), KEY, more_time=0.3)
    t0 = time.monotonic()
    with pytest.raises(PinEntryCancelled, match="timed out"):
        pad.read_pin_block(PAN, 0.3)
    assert 0.5 <= time.monotonic() - t0 < 1.5                     # 0.3 s asked for, 0.3 s more given
    capped = PinPad(entry(*["CLEAR"] * 20), KEY, more_time=0.3)  # pressed again and again: never more
    t0 = time.monotonic()
    with pytest.raises(PinEntryCancelled, match="timed out"):
        capped.read_pin_block(PAN, 0.3)
    assert time.monotonic() - t0 < 1.0


def test_clear_after_digits_only_clears() -> None:
    pad = PinPad(entry("1", "2", "CLEAR"), KEY, more_time=5)
    t0 = time.monotonic()
    with pytest.raises(PinEntryCancelled, match="timed out"):
        pad.read_pin_block(PAN, 0.3)
    assert time.monotonic() - t0 < 1.0
