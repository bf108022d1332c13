"""ISO/IEC 7816-4 status words the simulated EMV card answers with, and short-APDU parsing."""

from __future__ import annotations

__all__ = [
    "SW_AUTH_FAILED", "SW_AUTH_METHOD_BLOCKED", "SW_CLA_NOT_SUPPORTED", "SW_CONDITIONS_NOT_SATISFIED",
    "SW_FILE_NOT_FOUND", "SW_INS_NOT_SUPPORTED", "SW_OK", "SW_RECORD_NOT_FOUND",
    "SW_REFERENCED_DATA_NOT_FOUND", "SW_SM_DATA_INCORRECT", "SW_WARNING_SELECTED_FILE_INVALIDATED",
    "SW_WRONG_DATA", "SW_WRONG_LENGTH", "SW_WRONG_P1P2", "split_apdu",
]

SW_OK = b"\x90\x00"
SW_WARNING_SELECTED_FILE_INVALIDATED = b"\x62\x83"    # blocked application (Book 1 12.3.2)
SW_AUTH_FAILED = b"\x63\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_AUTH_METHOD_BLOCKED = b"\x69\x83"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_SM_DATA_INCORRECT = b"\x69\x88"
SW_WRONG_DATA = b"\x6a\x80"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_REFERENCED_DATA_NOT_FOUND = b"\x6a\x88"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"


def split_apdu(command: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(CLA, INS, P1, P2, data) of a short APDU, cases 1-4 (ISO/IEC 7816-3 12.1); None if malformed.

    >>> split_apdu(bytes.fromhex("00A404000E315041592E5359532E4444463031"))[:4]
    (0, 164, 4, 0)
    >>> split_apdu(bytes.fromhex("00B2010C")) == (0, 0xB2, 1, 0x0C, b"")
    True
    >>> split_apdu(bytes.fromhex("00A4040005A0")) is None        # Lc says 5, one byte follows
    True
    """
    if len(command) < 4:
        return None
    cla, ins, p1, p2 = command[:4]
    if len(command) <= 5:
        return cla, ins, p1, p2, b""
    lc = command[4]
    if lc == 0 or len(command) not in (5 + lc, 6 + lc):    # extended length is not supported
        return None
    return cla, ins, p1, p2, bytes(command[5:5 + lc])
