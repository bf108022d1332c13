"""RSA recovery of EMV certificates and signatures (EMV 4.4 Book 2 5.3, 5.4, 6.3, 6.4, 6.5, 6.6, 7.1).

Every check returns None on failure instead of raising: a bad certificate is a TVR bit, not an error.
RSA here is the raw operation pow(s, e, n) with message recovery (Book 2 A2.1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

__all__ = ["PublicKey", "recover", "recover_icc_key", "recover_issuer_key", "sda_data_auth_code",
           "signed_dynamic_data"]

HEADER, TRAILER, SHA1, RSA = 0x6A, 0xBC, 0x01, 0x01


@dataclass(frozen=True)
class PublicKey:
    modulus: int
    exponent: int

    @property
    def length(self) -> int:
        return (self.modulus.bit_length() + 7) // 8


def recover(signature: bytes, key: PublicKey) -> bytes | None:
    """The recovered block, framed 6A ... BC, or None (Book 2 5.3 steps 1-3)."""
    if len(signature) != key.length or key.length < 64:
        return None
    value = int.from_bytes(signature, "big")
    if value >= key.modulus:
        return None
    block = pow(value, key.exponent, key.modulus).to_bytes(key.length, "big")
    if block[0] != HEADER or block[-1] != TRAILER:
        return None
    return block


def _hash_ok(block: bytes, extra: bytes) -> bool:
    """SHA-1 over the block between header and hash, then extra, equals the hash (Book 2 5.3 step 5-7)."""
    return hashlib.sha1(block[1:-21] + extra).digest() == block[-21:-1]


def _expiry_ok(mmyy: bytes, today: dt.date) -> bool:
    """A certificate is valid through the last day of month MM of year YY (Book 2 5.3 step 9)."""
    digits = mmyy.hex()
    if not digits.isdigit() or not 1 <= int(digits[:2]) <= 12:
        return False
    year, month = 2000 + int(digits[2:]), int(digits[:2])
    return (today.year, today.month) <= (year, month)


def _digits(raw: bytes) -> str:
    return raw.hex().upper().rstrip("F")


def _key_from(block: bytes, offset: int, key_length: int, exp_length: int, remainder: bytes,
              exponent: bytes, field_length: int) -> PublicKey | None:
    if exp_length not in (1, 3) or len(exponent) != exp_length or key_length == 0:
        return None
    in_cert = block[offset:offset + field_length]
    if key_length > field_length:
        if len(remainder) != key_length - field_length:
            return None
        modulus = in_cert + remainder
    else:
        modulus = in_cert[:key_length]
    if modulus[0] == 0:
        return None
    return PublicKey(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def recover_issuer_key(cert: bytes, remainder: bytes, exponent: bytes, ca: PublicKey, pan: str,
                       today: dt.date) -> tuple[PublicKey | None, str]:
    """Issuer public key from 90, 92, 9F32 (Book 2 5.3, table 6); (None, reason) on failure."""
    block = recover(cert, ca)
    if block is None:
        return None, "issuer certificate does not recover (length, header or trailer)"
    n = ca.length
    if block[1] != 0x02:
        return None, "issuer certificate format is not 02"
    if block[11] != SHA1 or block[12] != RSA:
        return None, "issuer certificate names an unknown algorithm"
    if not _hash_ok(block, remainder + exponent):
        return None, "issuer certificate hash does not match"
    issuer_id = _digits(block[2:6])
    if not 3 <= len(issuer_id) <= 8 or not pan.startswith(issuer_id):
        return None, "issuer identifier does not match the PAN"
    if not _expiry_ok(block[6:8], today):
        return None, "issuer certificate expired"
    key = _key_from(block, 15, block[13], block[14], remainder, exponent, n - 36)
    return (key, "") if key else (None, "issuer public key fields are inconsistent")


def recover_icc_key(cert: bytes, remainder: bytes, exponent: bytes, issuer: PublicKey, pan: str,
                    static_data: bytes, today: dt.date, *, expected_format: int = 0x04,
                    ) -> tuple[PublicKey | None, str]:
    """ICC (format 04, Book 2 6.4 table 14) or ICC PIN encipherment (Book 2 7.1) public key."""
    block = recover(cert, issuer)
    if block is None:
        return None, "ICC certificate does not recover (length, header or trailer)"
    n = issuer.length
    if block[1] != expected_format:
        return None, "ICC certificate format is wrong"
    if block[17] != SHA1 or block[18] != RSA:
        return None, "ICC certificate names an unknown algorithm"
    if not _hash_ok(block, remainder + exponent + static_data):
        return None, "ICC certificate hash does not match"
    if _digits(block[2:12]) != pan:
        return None, "ICC certificate PAN does not match"
    if not _expiry_ok(block[12:14], today):
        return None, "ICC certificate expired"
    key = _key_from(block, 21, block[19], block[20], remainder, exponent, n - 42)
    return (key, "") if key else (None, "ICC public key fields are inconsistent")


def sda_data_auth_code(signed: bytes, issuer: PublicKey, static_data: bytes) -> bytes | None:
    """Verify Signed Static Application Data 93 (Book 2 5.4, table 7); the Data Authentication Code."""
    block = recover(signed, issuer)
    if block is None or block[1] != 0x03 or block[2] != SHA1:
        return None
    if not _hash_ok(block, static_data):
        return None
    return block[3:5]


def signed_dynamic_data(signed: bytes, icc: PublicKey, extra: bytes) -> bytes | None:
    """ICC Dynamic Data from Signed Dynamic Application Data 9F4B, format 05 (Book 2 6.5.2, table 17).

    extra is the DDOL data (DDA) or the unpredictable number (CDA, Book 2 6.6.2).
    """
    block = recover(signed, icc)
    if block is None or block[1] != 0x05 or block[2] != SHA1:
        return None
    length = block[3]
    if length > len(block) - 25:
        return None
    if not _hash_ok(block, extra):
        return None
    return block[4:4 + length]
