"""AES DUKPT (ANSI X9.24-3-2017): a unique PIN key per transaction, derived from a BDK the host keeps.

The host derives any transaction's key from the BDK and the 12-byte KSN (8-byte initial key ID + 32-bit
counter). The PIN pad holds only its initial key's descendants: one intermediate derivation key per counter
bit ("future keys"), so a transaction costs a few AES operations and a used key can never be recomputed.

Written from the standard's description; constants cite ANSI X9.24-3-2017 §6 and were checked against
the X9 "Supplement to ANSI X9.24-3-2017 Test Vectors" (2018-01-29, https://x9.org/standards/
x9-24-part-3-test-vectors/) in tests/test_dukpt_aes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from contracts.errors import PinPadError

__all__ = [
    "KEY_TYPES",
    "KEY_USAGES",
    "DerivationData",
    "DukptError",
    "DukptExhaustedError",
    "DukptKeyError",
    "FutureKeyRegisters",
    "TerminalDukpt",
    "derive_initial_key",
    "derive_intermediate_key",
    "derive_working_key",
    "host_derive_working_key",
]


class DukptError(PinPadError):
    """DUKPT key management failed."""


class DukptKeyError(DukptError, ValueError):
    """A key, key ID, KSN, key type or usage is malformed (wrong length, unknown name, invalid counter)."""


class DukptExhaustedError(DukptError):
    """The device has used its last transaction counter and must be given a new initial key."""


# X9.24-3-2017 §6.2: algorithm indicator and key length in bits, by key type.
KEY_TYPES: dict[str, tuple[int, int]] = {
    "TDEA2": (0x0000, 128),
    "TDEA3": (0x0001, 192),
    "AES128": (0x0002, 128),
    "AES192": (0x0003, 192),
    "AES256": (0x0004, 256),
}
_ALIASES = {"2TDEA": "TDEA2", "3TDEA": "TDEA3"}
# Security strength in bits (NIST SP 800-57 Part 1 Table 2); a working key may not be stronger than
# the initial key it comes from (the X9 supplement only derives equal or weaker keys).
_STRENGTH = {"TDEA2": 80, "TDEA3": 112, "AES128": 128, "AES192": 192, "AES256": 256}

# X9.24-3-2017 §6.2 key usage indicators; each value reproduces the supplement's counter-1 keys.
KEY_USAGES: dict[str, int] = {
    "key_encryption": 0x0002,
    "pin_encryption": 0x1000,
    "mac_generation": 0x2000,
    "mac_verification": 0x2001,
    "mac_both": 0x2002,
    "data_encryption_encrypt": 0x3000,
    "data_encryption_decrypt": 0x3001,
    "data_encryption_both": 0x3002,
    "key_derivation": 0x8000,
}
_USAGE_KEY_DERIVATION = 0x8000     # intermediate derivation keys
_USAGE_INITIAL_KEY = 0x8001        # initial key from the BDK

IKID_LEN, KSN_LEN = 8, 12
COUNTER_BITS = 32
MAX_ONE_BITS = 16                  # X9.24-3: counters with more one-bits are never used


def _key_type(name: str) -> str:
    canonical = _ALIASES.get(name, name)
    if canonical not in KEY_TYPES:
        raise DukptKeyError("unknown DUKPT key type", key_type=name)
    return canonical


def _aes_type_of(key: bytes | bytearray, what: str) -> str:
    types = {16: "AES128", 24: "AES192", 32: "AES256"}
    if len(key) not in types:
        raise DukptKeyError(f"{what} must be an AES key of 16, 24 or 32 bytes", length=len(key))
    return types[len(key)]


def _check_len(value: bytes | bytearray, length: int, what: str) -> None:
    if len(value) != length:
        raise DukptKeyError(f"{what} must be {length} bytes", length=len(value))


@dataclass(frozen=True)
class DerivationData:
    """The 16-byte derivation data block of X9.24-3-2017 §6.2, one per 128 bits of derived key.

    version 01 | key block counter | key usage (2) | algorithm (2) | length in bits (2) | 8-byte payload;
    the payload is the initial key ID for an initial key, else the derivation ID (last 4 bytes of the
    initial key ID) followed by the 32-bit transaction counter.
    """

    usage: int
    key_type: str
    payload: bytes

    @classmethod
    def for_initial_key(cls, initial_key_id: bytes, key_type: str) -> DerivationData:
        _check_len(initial_key_id, IKID_LEN, "initial key ID")
        return cls(_USAGE_INITIAL_KEY, _key_type(key_type), bytes(initial_key_id))

    @classmethod
    def for_counter(cls, usage: int, key_type: str, initial_key_id: bytes, counter: int) -> DerivationData:
        _check_len(initial_key_id, IKID_LEN, "initial key ID")
        return cls(usage, _key_type(key_type), bytes(initial_key_id[4:]) + counter.to_bytes(4, "big"))

    def block(self, key_block_counter: int) -> bytes:
        algorithm, bits = KEY_TYPES[self.key_type]
        return (bytes((1, key_block_counter)) + self.usage.to_bytes(2, "big") + algorithm.to_bytes(2, "big")
                + bits.to_bytes(2, "big") + self.payload)

    def derive(self, derivation_key: bytes | bytearray) -> bytes:
        """X9.24-3 key derivation: AES-ECB of each block (NIST SP 800-108 counter mode), truncated."""
        bits = KEY_TYPES[self.key_type][1]
        blocks = b"".join(self.block(i) for i in range(1, -(-bits // 128) + 1))
        encryptor = Cipher(algorithms.AES(bytes(derivation_key)), modes.ECB()).encryptor()
        return (encryptor.update(blocks) + encryptor.finalize())[: bits // 8]


def _check_counter(counter: int, counter_bits: int, max_one_bits: int) -> None:
    if not 0 < counter < 1 << counter_bits or counter.bit_count() > max_one_bits:
        raise DukptKeyError(f"transaction counter must be non-zero with at most {max_one_bits} one-bits",
                            counter=hex(counter))


def _walk(root: bytes | bytearray, counter: int, derive: Callable[[bytes | bytearray, int], bytes],
          counter_bits: int) -> bytes:
    """Descend from the root key through one derivation per set counter bit, most significant first."""
    key, partial = bytes(root), 0
    for bit in range(counter_bits - 1, -1, -1):
        if counter >> bit & 1:
            partial |= 1 << bit
            key = derive(key, partial)
    return key


def derive_initial_key(bdk: bytes, initial_key_id: bytes, key_type: str | None = None) -> bytes:
    """The terminal's initial key from the BDK (X9.24-3-2017 §6.3.1); key_type is the BDK's AES type."""
    bdk_type = _aes_type_of(bdk, "BDK")
    if key_type is not None and _key_type(key_type) != bdk_type:
        raise DukptKeyError("BDK length does not match key type", key_type=key_type, length=len(bdk))
    return DerivationData.for_initial_key(initial_key_id, bdk_type).derive(bdk)


def _split_ksn(ksn: bytes) -> tuple[bytes, int]:
    _check_len(ksn, KSN_LEN, "AES DUKPT KSN")
    counter = int.from_bytes(ksn[IKID_LEN:], "big")
    _check_counter(counter, COUNTER_BITS, MAX_ONE_BITS)
    return bytes(ksn[:IKID_LEN]), counter


def _idk_step(ikid: bytes, ik_type: str) -> Callable[[bytes | bytearray, int], bytes]:
    def derive(parent: bytes | bytearray, partial: int) -> bytes:
        return DerivationData.for_counter(_USAGE_KEY_DERIVATION, ik_type, ikid, partial).derive(parent)
    return derive


def derive_intermediate_key(initial_key: bytes, ksn: bytes) -> bytes:
    """The intermediate derivation key for this KSN's counter: one derivation per set counter bit."""
    ik_type = _aes_type_of(initial_key, "initial key")
    ikid, counter = _split_ksn(ksn)
    return _walk(initial_key, counter, _idk_step(ikid, ik_type), COUNTER_BITS)


def _working_key(derivation_key: bytes | bytearray, ikid: bytes, counter: int, usage: str,
                 key_type: str | None) -> bytes:
    if usage not in KEY_USAGES:
        raise DukptKeyError("unknown DUKPT key usage", usage=usage)
    ik_type = _aes_type_of(derivation_key, "derivation key")
    wk_type = ik_type if key_type is None else _key_type(key_type)
    if _STRENGTH[wk_type] > _STRENGTH[ik_type]:
        raise DukptKeyError("working key would be stronger than the initial key",
                            key_type=wk_type, initial_key_type=ik_type)
    return DerivationData.for_counter(KEY_USAGES[usage], wk_type, ikid, counter).derive(derivation_key)


def derive_working_key(initial_key: bytes, ksn: bytes, usage: str, key_type: str | None = None) -> bytes:
    """The working key for one transaction (X9.24-3-2017 §6.3.3); key_type defaults to the initial key's."""
    ikid, counter = _split_ksn(ksn)
    return _working_key(derive_intermediate_key(initial_key, ksn), ikid, counter, usage, key_type)


def host_derive_working_key(bdk: bytes, ksn: bytes, usage: str, key_type: str | None = None) -> bytes:
    """Receiving side: BDK -> initial key (from the KSN's key ID) -> working key."""
    _check_len(ksn, KSN_LEN, "AES DUKPT KSN")
    return derive_working_key(derive_initial_key(bdk, ksn[:IKID_LEN]), ksn, usage, key_type)


class FutureKeyRegisters:
    """The originating device's key registers, shared by X9.24-1 (TDES) and X9.24-3 (AES) DUKPT.

    Register i holds the key for the counter whose bits above i are the current counter's and whose bit
    i is set; the current counter's key sits at its lowest set bit. Using it derives the registers below
    that bit (unless the counter already has the maximum of one-bits), then the key is zeroed.
    """

    def __init__(self, root: bytes, derive: Callable[[bytes | bytearray, int], bytes], *,
                 counter_bits: int, max_one_bits: int, counter: int = 1) -> None:
        _check_counter(counter, counter_bits, max_one_bits)
        self._derive, self._bits, self._max_ones = derive, counter_bits, max_one_bits
        self._registers: list[bytearray | None] = [None] * counter_bits
        low = (counter & -counter).bit_length() - 1
        self._registers[low] = bytearray(_walk(root, counter, derive, counter_bits))
        for i in range(low + 1, counter_bits):
            if not counter >> i & 1:
                future = (counter >> (i + 1) << (i + 1)) | 1 << i
                self._registers[i] = bytearray(_walk(root, future, derive, counter_bits))
        self._counter: int | None = counter

    @property
    def counter(self) -> int | None:
        """The counter the next transaction will use; None once exhausted."""
        return self._counter

    def current(self) -> tuple[int, bytearray]:
        if self._counter is None:
            raise DukptExhaustedError("DUKPT transaction counter exhausted; inject a new initial key")
        low = (self._counter & -self._counter).bit_length() - 1
        key = self._registers[low]
        if key is None:                                    # unreachable unless the state was tampered with
            raise DukptError("DUKPT key register is empty", register=low)
        return self._counter, key

    def advance(self) -> None:
        """Derive the future keys below the current one, wipe it, and move to the next usable counter."""
        counter, key = self.current()
        low = (counter & -counter).bit_length() - 1
        if counter.bit_count() < self._max_ones:
            for i in range(low):
                self._registers[i] = bytearray(self._derive(key, counter | 1 << i))
            following = counter + 1
        else:                                              # every counter below would have too many one-bits
            following = counter + (1 << low)
        _wipe(key)
        self._registers[low] = None
        self._counter = following if following < 1 << self._bits else None

    def wipe(self) -> None:
        for i, key in enumerate(self._registers):
            if key is not None:
                _wipe(key)
                self._registers[i] = None
        self._counter = None


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0


class TerminalDukpt:
    """PIN pad side of AES DUKPT: hands out (KSN, working key) once per counter, never twice.

    Holds no initial key after construction. counter lets a device resume where it stopped (and tests
    start near the interesting counters); a new device starts at 1.
    """

    def __init__(self, initial_key: bytes, initial_key_id: bytes, key_type: str | None = None, *,
                 counter: int = 1) -> None:
        _check_len(initial_key_id, IKID_LEN, "initial key ID")
        ik_type = _aes_type_of(initial_key, "initial key")
        self._ikid = bytes(initial_key_id)
        self._key_type = key_type
        _working_key(bytes(len(initial_key)), self._ikid, 1, "pin_encryption", key_type)   # validate early
        self._registers = FutureKeyRegisters(initial_key, _idk_step(self._ikid, ik_type),
                                             counter_bits=COUNTER_BITS, max_one_bits=MAX_ONE_BITS,
                                             counter=counter)

    @property
    def exhausted(self) -> bool:
        return self._registers.counter is None

    @property
    def counter(self) -> int | None:
        return self._registers.counter

    def next_transaction(self, usage: str = "pin_encryption",
                         key_type: str | None = None) -> tuple[bytes, bytes]:
        """The next KSN and its working key; the counter advances and the used key is wiped. key_type
        overrides the device's working key type for this one key (e.g. "TDEA2" for a format 0 PIN block)."""
        counter, derivation_key = self._registers.current()
        key = _working_key(derivation_key, self._ikid, counter, usage, key_type or self._key_type)
        self._registers.advance()
        return self._ikid + counter.to_bytes(4, "big"), key

    def wipe(self) -> None:
        """Zero every register (decommissioning); the device is exhausted afterwards."""
        self._registers.wipe()
