"""Layouts of the DART application fields that are more than one number: DC7 pump parameters and the
CD101/DC101 total counters (Protocol Specification Dart Pump Interface rev. 2.11). Pure functions over
bytes, shared by the controller, the simulator and the capture decoder.
"""

from __future__ import annotations

from .dart import FrameError, bcd_decode, bcd_encode

__all__ = ["COUN_AMOUNT_SUM", "COUN_VOLUME_SUM", "DC7_LENGTH", "DC101_LENGTH", "amount_coun",
           "coun_is_volume", "dc7_decimals", "dc101_total", "encode_dc7", "encode_dc101", "volume_coun"]

# DC7 "Pump parameters" (Pump Interface rev. 2.11), LNG 50: RES 22, DPVOL, DPAMO, DPUNP, RES 4,
# MAMO 4 BCD, RES 2, GRADE 15 (one per nozzle). DPVOL and DPAMO are 0..8 decimals, DPUNP 0..4.
DC7_LENGTH = 50
_DP_AT = 22
_MAMO_AT = 29
_GRADES_AT = 35
# CD101/DC101 "Total counters" (Pump Interface rev. 2.11, p. 19 and p. 25). COUN 01..08: a nozzle's
# volume total, 09 the pump's; 11..18 a nozzle's amount total, 19 the pump's. DC101 LNG 16: COUN,
# TOTVAL 5 BCD, TOTM1 5 BCD, TOTM2 5 BCD (the two meters' totals of the counter).
COUN_VOLUME_SUM, COUN_AMOUNT_SUM = 0x09, 0x19
DC101_LENGTH = 16


def volume_coun(nozzle: int) -> int:
    """COUN of a nozzle's volume total; DART keeps counters for nozzles 1..8 only."""
    if nozzle < 1 or nozzle > 8:
        raise FrameError("no total counter for this nozzle", nozzle=nozzle)
    return nozzle


def amount_coun(nozzle: int) -> int:
    """COUN of a nozzle's amount total."""
    return 0x10 + volume_coun(nozzle)


def coun_is_volume(coun: int) -> bool:
    """True for a volume counter, False for an amount counter; FrameError for a COUN DART does not define."""
    if 0x01 <= coun <= COUN_VOLUME_SUM:
        return True
    if 0x11 <= coun <= COUN_AMOUNT_SUM:
        return False
    raise FrameError("unknown total counter", coun=coun)


def dc101_total(data: bytes) -> tuple[int, int]:
    """DC101 data -> (COUN, TOTVAL); the meter totals TOTM1/TOTM2 are checked as BCD but not returned."""
    if len(data) != DC101_LENGTH:
        raise FrameError("DC101 length", length=len(data))
    coun_is_volume(data[0])
    total = bcd_decode(data[1:6])
    bcd_decode(data[6:16])
    return data[0], total


def encode_dc101(coun: int, total: int, meter1: int = 0, meter2: int = 0) -> bytes:
    """DC101 data for a counter (the simulator's answer)."""
    coun_is_volume(coun)
    return bytes((coun,)) + bcd_encode(total, 5) + bcd_encode(meter1, 5) + bcd_encode(meter2, 5)


def dc7_decimals(data: bytes) -> tuple[int, int, int]:
    """DC7 data -> (DPVOL, DPAMO, DPUNP), each checked against its range."""
    if len(data) != DC7_LENGTH:
        raise FrameError("DC7 length", length=len(data))
    vol, amo, unp = data[_DP_AT], data[_DP_AT + 1], data[_DP_AT + 2]
    if vol > 8 or amo > 8 or unp > 4:
        raise FrameError("DC7 decimals out of range", dpvol=vol, dpamo=amo, dpunp=unp)
    bcd_decode(data[_MAMO_AT:_MAMO_AT + 4])
    return vol, amo, unp


def encode_dc7(dpvol: int, dpamo: int, dpunp: int, max_amount: int = 0,
               grades: tuple[int, ...] = ()) -> bytes:
    """DC7 data with the given decimals, maximum amount and grade per nozzle (the simulator's answer)."""
    out = bytearray(DC7_LENGTH)
    out[_DP_AT], out[_DP_AT + 1], out[_DP_AT + 2] = dpvol, dpamo, dpunp
    out[_MAMO_AT:_MAMO_AT + 4] = bcd_encode(max_amount, 4)
    for i, g in enumerate(grades[:15]):
        out[_GRADES_AT + i] = g
    return bytes(out)
