"""Answer-to-reset of the simulator's virtual contact cards, and a checker written from the ATR rules of
EMV 4.4 Book 1 section 8 (characters the ICC returns, 8.2; what a terminal accepts, 8.3) and ISO/IEC 7816-3
8.2 (T0, TDi chaining, TCK).

The cards answer an EMV "basic ATR":
- T=0: 3B 6K 00 00 <K historical bytes>         (TB1 = 00 no VPP, TC1 = 00 no extra guard time, no TCK)
- T=1: 3B EK 00 00 81 31 FE 45 <K bytes> TCK    (TD1 81: T=1, TD2 present; TD2 31: T=1, TA3 and TB3 present;
  TA3 FE: IFSC 254; TB3 45: BWI 4, CWI 5; TCK because a protocol other than T=0 is indicated)
Never 3B 8n 80 01 ...: PC/SC Part 3 (3.1.3.2.3) reserves that form for ATRs a reader builds for contactless
cards, and a PC/SC terminal would then treat the card as contactless (GET DATA FF CA for a UID).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import MessageError

__all__ = ["MAX_ATR", "AtrInfo", "build_atr", "check_emv_atr"]

MAX_ATR = 33                        # TS and at most 32 characters (ISO/IEC 7816-3 8.2.1)


def _xor(data: bytes) -> int:
    out = 0
    for byte in data:
        out ^= byte
    return out


def build_atr(historical: bytes, protocol: int = 1) -> bytes:
    """An EMV basic ATR for T=0 or T=1 (Book 1 8.2) carrying up to 15 historical bytes.

    >>> build_atr(b"FCEMV01", 0).hex().upper()
    '3B6700004643454D563031'
    >>> build_atr(b"FCEMV01", 1).hex().upper()
    '3BE700008131FE454643454D563031B6'
    """
    if len(historical) > 15:
        raise MessageError("ATR carries at most 15 historical bytes", length=len(historical))
    if protocol == 0:
        return bytes([0x3B, 0x60 | len(historical), 0x00, 0x00]) + historical
    if protocol != 1:
        raise MessageError("virtual contact cards speak T=0 or T=1", protocol=protocol)
    body = bytes([0xE0 | len(historical), 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45]) + historical
    return b"\x3b" + body + bytes([_xor(body)])


@dataclass(frozen=True)
class AtrInfo:
    protocol: int                   # the first protocol offered (TD1), the one an EMV terminal uses
    protocols: tuple[int, ...]
    interface: dict[str, int]       # "TA1", "TB1", ... as present
    historical: bytes


def _interface_bytes(atr: bytes) -> tuple[dict[str, int], list[int], int]:
    """Walk T0 and the TDi chain (ISO/IEC 7816-3 8.2.2, 8.2.3): the interface bytes by name, the protocols
    TD1, TD2... indicate, and the offset of the first historical byte."""
    found: dict[str, int] = {}
    protocols: list[int] = []
    indicator, i, level = atr[1] >> 4, 2, 1
    while True:
        for bit, letter in ((0x1, "A"), (0x2, "B"), (0x4, "C"), (0x8, "D")):
            if indicator & bit:
                if i >= len(atr):
                    raise MessageError("ATR ends inside its interface bytes", byte=f"T{letter}{level}")
                found[f"T{letter}{level}"] = atr[i]
                i += 1
        td = found.get(f"TD{level}")
        if td is None:
            return found, protocols, i
        protocols.append(td & 0x0F)
        indicator, level = td >> 4, level + 1


def _check_t1(found: dict[str, int]) -> None:
    """Book 1 8.3: the T=1 characters a terminal needs (IFSC in TA3, BWI/CWI in TB3, LRC)."""
    ta3, tb3, tc3 = found.get("TA3"), found.get("TB3"), found.get("TC3")
    if ta3 is not None and not 0x10 <= ta3 <= 0xFE:
        raise MessageError("ATR TA3 (IFSC) outside 10-FE", ta3=f"{ta3:02X}")
    if tb3 is None:
        raise MessageError("ATR offers T=1 without TB3 (BWI, CWI)")
    bwi, cwi = tb3 >> 4, tb3 & 0x0F
    tc1 = found.get("TC1", 0)
    n = -1 if tc1 == 0xFF else tc1
    if bwi > 4 or cwi > 5 or 2 ** cwi <= n + 1:
        raise MessageError("ATR TB3 outside BWI <= 4, CWI <= 5, 2^CWI > N+1", tb3=f"{tb3:02X}")
    if tc3 not in (None, 0x00):
        raise MessageError("ATR TC3 asks for a CRC; EMV uses the LRC", tc3=f"{tc3:02X}")


def check_emv_atr(atr: bytes) -> AtrInfo:
    """Check an ATR against the rules an EMV terminal applies (Book 1 8.3); MessageError says which."""
    if not 2 <= len(atr) <= MAX_ATR:
        raise MessageError("ATR length outside 2-33 bytes", length=len(atr))
    if atr[0] not in (0x3B, 0x3F):
        raise MessageError("ATR TS is neither 3B (direct) nor 3F (inverse)", ts=f"{atr[0]:02X}")
    if atr[1] >> 4 == 0x8 and atr[2:4] == b"\x80\x01":
        raise MessageError("ATR has the PC/SC Part 3 contactless form 3B 8n 80 01")
    found, protocols, i = _interface_bytes(atr)
    historical_count = atr[1] & 0x0F
    first = protocols[0] if protocols else 0
    if first not in (0, 1):
        raise MessageError("ATR TD1 offers a protocol other than T=0 or T=1", protocol=first)
    if any(p not in (0, 1, 0xE) for p in protocols[1:]) or (first == 1 and protocols[1:2] not in ([], [1])):
        raise MessageError("ATR TD2 indicates a protocol EMV does not allow", protocols=str(protocols))
    ta2 = found.get("TA2")
    if ta2 is not None and (ta2 & 0x10 or ta2 & 0x0F != first):
        raise MessageError("ATR TA2 (specific mode) is not usable", ta2=f"{ta2:02X}")
    ta1 = found.get("TA1")
    if ta1 is not None and ta2 is not None and not 0x11 <= ta1 <= 0x13:
        raise MessageError("ATR TA1 outside 11-13 in specific mode", ta1=f"{ta1:02X}")
    if "TB2" in found:
        raise MessageError("ATR carries TB2 (programming voltage), which EMV rejects")
    tc2 = found.get("TC2")
    if tc2 is not None and (first != 0 or not 0x01 <= tc2 <= 0x0A):
        raise MessageError("ATR TC2 (work waiting time) outside 01-0A for T=0", tc2=f"{tc2:02X}")
    if 1 in protocols:              # T=1 offered at all: its characters must be usable
        _check_t1(found)
    needs_tck = any(p != 0 for p in protocols)
    end = i + historical_count + (1 if needs_tck else 0)
    if len(atr) != end:
        raise MessageError("ATR length does not match T0, the TDi chain and TCK", length=len(atr),
                           expected=end)
    if needs_tck and _xor(atr[1:]) != 0:
        raise MessageError("ATR TCK does not check (XOR of T0..TCK must be 0)")
    return AtrInfo(first, tuple(protocols) or (0,), found, bytes(atr[i:i + historical_count]))
