"""ISO 8583:1987 message layout of the acquirer link, as a pyiso8583 spec dict (data, not code).

Encoding choices (one place, so the host simulator and the terminal cannot drift apart):

- no header; MTI 4 ASCII digits; primary and secondary bitmaps binary (8 bytes each);
- numeric (n), alphanumeric (an/ans) and track (z) fields are ASCII, variable lengths as ASCII
  LL/LLL prefixes, so a hex dump of a frame is readable on the bench;
- binary (b) fields are raw bytes; pyiso8583 shows them as upper-case hex strings.

Field numbers, names and formats follow ISO 8583:1987 section 4.3 (data element directory); where we
deviate or use a reserved/private field the comment says so and why.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AMOUNT_TYPE_APPROVED",
    "ENTRY_CHIP_PIN",
    "ENTRY_CONTACTLESS",
    "ENTRY_FALLBACK",
    "ENTRY_MAGSTRIPE",
    "ENTRY_MAGSTRIPE_NO_PIN",
    "ICC_ENTRY_MODES",
    "MAGSTRIPE_ENTRY_MODES",
    "MCC_AUTOMATED_FUEL_DISPENSER",
    "POS_CONDITION_PREAUTH",
    "PROC_GOODS_AND_SERVICES",
    "SPEC",
]


def _fixed(enc: str, length: int, desc: str) -> dict[str, Any]:
    return {"data_enc": enc, "len_enc": "ascii", "len_type": 0, "max_len": length, "desc": desc}


def _var(enc: str, digits: int, max_len: int, desc: str) -> dict[str, Any]:
    return {"data_enc": enc, "len_enc": "ascii", "len_type": digits, "max_len": max_len, "desc": desc}


SPEC: dict[str, dict[str, Any]] = {
    "h": _fixed("ascii", 0, "No message header"),
    "t": _fixed("ascii", 4, "Message type indicator"),
    "p": _fixed("b", 8, "Primary bitmap (binary)"),
    "1": _fixed("b", 8, "Secondary bitmap (binary)"),
    # 2  Primary account number, n..19 LLVAR.
    "2": _var("ascii", 2, 19, "Primary account number (PAN)"),
    # 3  Processing code, n6: transaction type (2), from account (2), to account (2).
    "3": _fixed("ascii", 6, "Processing code"),
    # 4  Amount, transaction, n12, minor units of field 49.
    "4": _fixed("ascii", 12, "Amount, transaction"),
    # 7  Transmission date and time, n10 MMDDhhmmss, GMT.
    "7": _fixed("ascii", 10, "Transmission date and time"),
    # 11 Systems trace audit number, n6.
    "11": _fixed("ascii", 6, "Systems trace audit number"),
    # 12 Time, local transaction, n6 hhmmss.  13 Date, local transaction, n4 MMDD.
    "12": _fixed("ascii", 6, "Time, local transaction"),
    "13": _fixed("ascii", 4, "Date, local transaction"),
    # 14 Date, expiration, n4 YYMM.
    "14": _fixed("ascii", 4, "Date, expiration"),
    # 18 Merchant's type, n4 (ISO 18245 merchant category code; 5542 automated fuel dispenser).
    "18": _fixed("ascii", 4, "Merchant type"),
    # 22 Point of service entry mode, n3: PAN entry mode (2) + PIN entry capability (1).
    "22": _fixed("ascii", 3, "Point of service entry mode"),
    # 23 Card sequence number, n3 (the EMV PAN sequence number 5F34, zero-padded).
    "23": _fixed("ascii", 3, "Card sequence number"),
    # 25 Point of service condition code, n2.
    "25": _fixed("ascii", 2, "Point of service condition code"),
    # 35 Track 2 data, z..37 LLVAR (magnetic stripe and fallback only).
    "35": _var("ascii", 2, 37, "Track 2 data"),
    # 37 Retrieval reference number, an12.  38 Authorization identification response, an6.
    "37": _fixed("ascii", 12, "Retrieval reference number"),
    "38": _fixed("ascii", 6, "Authorization identification response"),
    # 39 Response code, an2.
    "39": _fixed("ascii", 2, "Response code"),
    # 41 Card acceptor terminal identification, ans8.  42 Card acceptor identification code, ans15.
    "41": _fixed("ascii", 8, "Card acceptor terminal identification"),
    "42": _fixed("ascii", 15, "Card acceptor identification code"),
    # 43 Card acceptor name/location, ans40.
    "43": _fixed("ascii", 40, "Card acceptor name/location"),
    # 49 Currency code, transaction, n3 (ISO 4217 numeric).
    "49": _fixed("ascii", 3, "Currency code, transaction"),
    # 52 Personal identification number data, b64 (8 bytes): an ISO 9564 format 0 block under a
    #    TDES DUKPT key. A 16-byte AES format 4 block does not fit; it goes in field 110 below.
    "52": _fixed("b", 8, "PIN data"),
    # 53 Security related control information. 1987 defines n16, which cannot hold a DUKPT key
    #    serial number (10 bytes TDES, 12 bytes AES); like most acquirer specs we carry the KSN as
    #    binary LLVAR instead.
    "53": _var("b", 2, 12, "Security related control information (KSN)"),
    # 54 Additional amounts, an..120 LLLVAR: up to 6 groups of account type n2, amount type n2,
    #    currency n3, sign C/D, amount n12 (the usual 20-character layout).
    "54": _var("ascii", 3, 120, "Additional amounts"),
    # 55 Reserved for ISO use (LLLVAR) in 1987; assigned to ICC system related data (BER-TLV) in the
    #    1993 edition, which is how every EMV acquirer uses it. Binary, at most 255 bytes here.
    "55": _var("b", 3, 255, "ICC data (BER-TLV)"),
    # 60 Reserved for national use, ans..999 LLLVAR: here the pump (fuelling point) number, n2.
    "60": _var("ascii", 3, 999, "Fuelling point"),
    # 63 Reserved for private use, ans..999 LLLVAR: fuel lines, see messages.FuelLine.
    "63": _var("ascii", 3, 999, "Fuel product and volume"),
    # 90 Original data elements, n42: original MTI n4, STAN n6, transmission date/time n10,
    #    acquiring institution id n11, forwarding institution id n11.
    "90": _fixed("ascii", 42, "Original data elements"),
    # 95 Replacement amounts, an42: actual amount transaction n12, actual amount settlement n12,
    #    actual transaction fee x+n8, actual settlement fee x+n8.
    "95": _fixed("ascii", 42, "Replacement amounts"),
    # 110 Reserved for ISO use (LLLVAR) in 1987; used here for a 16-byte ISO 9564 format 4 (AES)
    #     PIN block, which field 52 (b64) cannot carry.
    "110": _var("b", 3, 16, "PIN data, AES format 4"),
}

# Processing code (field 3): 00 goods and services, 00 default account, 00 default account.
# ISO 8583:1987 has no separate pre-authorization transaction type: the pre-authorization is the
# MTI 0100 (authorization, no posting) with POS condition code 06, and the completion the 0220 advice.
PROC_GOODS_AND_SERVICES = "000000"
# POS condition code (field 25) 06 "preauthorized request" (ISO 8583:1987).
POS_CONDITION_PREAUTH = "06"
MCC_AUTOMATED_FUEL_DISPENSER = "5542"

# POS entry mode (field 22). The 1987 code table lists 00 unknown, 01 manual, 02 magnetic stripe;
# 05 (ICC), 07 (contactless ICC), 80 (chip fallback to stripe) and 90 (full, unaltered track) are
# the network extensions every EMV acquirer uses. Third digit: 1 = terminal can accept a PIN,
# 2 = cannot.
ENTRY_CHIP_PIN = "051"
ENTRY_CONTACTLESS = "071"
ENTRY_MAGSTRIPE = "901"
ENTRY_MAGSTRIPE_NO_PIN = "902"
ENTRY_FALLBACK = "801"
ICC_ENTRY_MODES = frozenset({ENTRY_CHIP_PIN, ENTRY_CONTACTLESS})
MAGSTRIPE_ENTRY_MODES = frozenset({ENTRY_MAGSTRIPE, ENTRY_MAGSTRIPE_NO_PIN, ENTRY_FALLBACK})

# Amount type in field 54 for "amount approved" of a partial approval (response code 10). The
# amount-type codes are scheme-defined; this is the acquirer interface's private choice.
AMOUNT_TYPE_APPROVED = "90"
