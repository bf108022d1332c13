"""Answer-to-reset of the simulator's virtual cards."""

from __future__ import annotations

__all__ = ["build_atr"]


def build_atr(historical: bytes) -> bytes:
    """ATR offering T=0 and T=1 (TD1=80 -> TD2=01), with the TCK that T=1 requires (ISO/IEC 7816-3 8.2.5)."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])
