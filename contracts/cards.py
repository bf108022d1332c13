"""Card numbers: masking for receipts and screens, a keyed token to link sales, Luhn."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["card_token", "luhn_ok", "mask_number", "mask_pan"]


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits at most (PCI DSS 3.4); shorter numbers keep only the last 4."""
    if len(pan) >= 16:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    return "*" * (len(pan) - 4) + pan[-4:]


def mask_number(number: str) -> str:
    """A fleet card number as shown and sent: a PAN as mask_pan; a tag ("U" + its UID in upper-case hex) as
    "U", stars and the UID's last 4 hex digits, 12 to 19 characters (the wire's card_masked pattern: a
    4-byte UID is only 9, a 10-byte one 21; UIDs are 4, 7, 8 or 10 bytes: ISO/IEC 14443-3, 15693, FeliCa).

    >>> mask_number("7083560012345678")
    '708356******5678'
    >>> mask_number("U04A1B2C3D4E5F6")
    'U**********E5F6'
    >>> mask_number("UDEADBEEF")
    'U*******BEEF'
    >>> mask_number("U00112233445566778899")
    'U**************8899'
    """
    if number.startswith("U"):
        return "U" + "*" * min(max(len(number) - 5, 7), 14) + number[-4:]
    return mask_pan(number)


def card_token(key: bytes, pan: str) -> str:
    """Keyed hash of the card number: links one card's sales without storing the number."""
    return hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()[:32]


def luhn_ok(pan: str) -> bool:
    if not pan.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
