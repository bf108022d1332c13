"""TDES DUKPT (ANSI X9.24-1-2009 Annex A): the legacy scheme, for hosts and PIN pads still on 2TDEA.

KSN: 10 bytes, a 59-bit initial KSN and a 21-bit transaction counter; a counter is used only if it has at
most 10 one-bits. Written from the standard's description; tests/test_dukpt_tdes.py checks it against the
X9.24-1-2009 A.4 test data.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, modes

from drivers.pinpad.dukpt_aes import DukptKeyError, FutureKeyRegisters

try:  # cryptography >= 43 keeps TDES in "decrepit"; the old name warns there
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - cryptography 42
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

__all__ = [
    "COUNTER_BITS",
    "KSN_LEN",
    "MAX_ONE_BITS",
    "TdesTerminalDukpt",
    "derive_initial_key",
    "derive_pin_key",
    "derive_transaction_key",
    "host_derive_pin_key",
    "pin_key_variant",
]

KSN_LEN, KEY_LEN = 10, 16
COUNTER_BITS = 21
MAX_ONE_BITS = 10
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
# X9.24-1-2009 Annex A: the key-register mask used for the IPEK's right half and in every key generation.
_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
# X9.24-1-2009 Annex A processing algorithms ("Request PIN Entry 2"):
# the PIN encryption variant of a transaction key.
_PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")


def _xor(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _ecb(key24: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key24), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _des(key8: bytes, block: bytes) -> bytes:
    """Single DES as TDES with K1=K2=K3 (cryptography warns on 8- and 16-byte TDES keys)."""
    return _ecb(key8 * 3, block)


def _tdes2(key16: bytes, block: bytes) -> bytes:
    return _ecb(key16 + key16[:8], block)


def _check_len(value: bytes | bytearray, length: int, what: str) -> None:
    if len(value) != length:
        raise DukptKeyError(f"{what} must be {length} bytes", length=len(value))


def _split_ksn(ksn: bytes) -> tuple[int, int]:
    """(KSN with the counter cleared, counter) as integers."""
    _check_len(ksn, KSN_LEN, "TDES DUKPT KSN")
    value = int.from_bytes(ksn, "big")
    return value & ~_COUNTER_MASK, value & _COUNTER_MASK


def derive_initial_key(bdk: bytes, ksn: bytes) -> bytes:
    """The IPEK: TDES of the initial KSN's left 8 bytes under the BDK, then under BDK xor C0C0C0C0... ."""
    _check_len(bdk, KEY_LEN, "TDES DUKPT BDK (2TDEA)")
    base, _ = _split_ksn(ksn)
    left8 = (base >> 16).to_bytes(8, "big")
    return _tdes2(bdk, left8) + _tdes2(_xor(bdk, _KEY_MASK), left8)


def _generate_key(key: bytes | bytearray, register8: bytes) -> bytes:
    """The non-reversible key generation process of X9.24-1-2009 Annex A on the 8-byte crypto register."""
    key = bytes(key)

    def half(k: bytes) -> bytes:
        return _xor(_des(k[:8], _xor(register8, k[8:])), k[8:])

    return half(_xor(key, _KEY_MASK)) + half(key)


def _ksn_step(base: int) -> Callable[[bytes | bytearray, int], bytes]:
    """Key generation for a (partial) counter: the crypto register is the KSN's rightmost 8 bytes."""
    def derive(parent: bytes | bytearray, partial: int) -> bytes:
        return _generate_key(parent, ((base | partial) & (1 << 64) - 1).to_bytes(8, "big"))
    return derive


def _walk(ipek: bytes, base: int, counter: int) -> bytes:
    key, partial, step = ipek, 0, _ksn_step(base)
    for bit in range(COUNTER_BITS - 1, -1, -1):
        if counter >> bit & 1:
            partial |= 1 << bit
            key = step(key, partial)
    return key


def derive_transaction_key(ipek: bytes, ksn: bytes) -> bytes:
    """The transaction ("current") key for the KSN's counter, before any variant (A.4 lists these)."""
    _check_len(ipek, KEY_LEN, "IPEK")
    base, counter = _split_ksn(ksn)
    if not counter or counter.bit_count() > MAX_ONE_BITS:
        raise DukptKeyError(f"transaction counter must be non-zero with at most {MAX_ONE_BITS} one-bits",
                            counter=hex(counter))
    return _walk(ipek, base, counter)


def pin_key_variant(transaction_key: bytes | bytearray) -> bytes:
    """The PIN encryption key: transaction key xor 00000000000000FF00000000000000FF."""
    _check_len(transaction_key, KEY_LEN, "transaction key")
    return _xor(transaction_key, _PIN_VARIANT)


def derive_pin_key(ipek: bytes, ksn: bytes) -> bytes:
    return pin_key_variant(derive_transaction_key(ipek, ksn))


def host_derive_pin_key(bdk: bytes, ksn: bytes) -> bytes:
    """Receiving side: BDK -> IPEK (from the KSN with its counter cleared) -> PIN key for this KSN."""
    return derive_pin_key(derive_initial_key(bdk, ksn), ksn)


class TdesTerminalDukpt:
    """PIN pad side of TDES DUKPT: 21 future-key registers; hands out (KSN, PIN key) once per counter."""

    def __init__(self, ipek: bytes, initial_ksn: bytes, *, counter: int = 1) -> None:
        _check_len(ipek, KEY_LEN, "IPEK")
        base, initial_counter = _split_ksn(initial_ksn)
        if initial_counter:
            raise DukptKeyError("initial KSN must have a zero transaction counter",
                                counter=hex(initial_counter))
        self._base = base
        self._registers = FutureKeyRegisters(ipek, _ksn_step(base), counter_bits=COUNTER_BITS,
                                             max_one_bits=MAX_ONE_BITS, counter=counter)

    @property
    def exhausted(self) -> bool:
        return self._registers.counter is None

    @property
    def counter(self) -> int | None:
        return self._registers.counter

    def next_transaction(self) -> tuple[bytes, bytes]:
        """The next KSN and its PIN encryption key; the counter advances and the used key is wiped."""
        counter, key = self._registers.current()
        pin_key = pin_key_variant(key)
        self._registers.advance()
        return (self._base | counter).to_bytes(KSN_LEN, "big"), pin_key

    def wipe(self) -> None:
        """Zero every register (decommissioning); the device is exhausted afterwards."""
        self._registers.wipe()
