"""The acquirer dialect of the fuel terminal, as data: ISO 8583:1987 messages for an automated fuel dispenser
(MCC 5542), with the acquirer's choices for what 1987 leaves to private or national use.

Sources (what each choice follows; comments below name the one for each field):
- [ISO87] ISO 8583:1987, 4.3 data element directory: field numbers, names, lengths and formats; checked
  against an independent transcription, pyiso8583's `iso8583.specs.default`
  (tests/test_acquirer_crosscheck.py).
- [MC61] Mastercard DE 61 "Point-of-Service Data" as published by processors for their Mastercard
  authorisation messages: Thredd EHI guide 4.24 "POS_Data_DE61 field" (docs.thredd.com/ehi-json/Content/
  Appendices/POS_Data_DE61.htm) and Galileo "DE061 Subfields" (docs.galileo-ft.com/pro/reference/
  api-reference-de061-subfields): subfield 1 attendance (1 = unattended, CAT), 7 transaction status
  (4 = pre-authorization request), 10 CAT level; level 2 = self-service terminal, as Cybersource's
  "pointOfSaleInformation.catLevel" lists the levels (an automated fuel dispenser is one).
- [MC43] Mastercard DE 43 card acceptor name/location, Thredd EHI guide 4.17 "Merch_Name_DE43 field"
  (docs.thredd.com/ehi-json/Content/Appendices/Merch_Name_DE43_Authorisations.htm): name 1-22, space,
  city 24-36, space, ISO 3166 alpha-3 country 38-40.
- [MC22] Mastercard DE 22 subfield 1, Galileo "DE022 Codes" (docs.galileo-ft.com/pro/reference/
  api-reference-de022-codes): 05 chip, 07 contactless, 80 chip fallback to magnetic stripe, 90 full track.
- [MC48] Mastercard DE 48 subelement 61 "POS data, extended condition codes", subfield 1 partial approval
  terminal support indicator (1 = supported). Taken from the Mastercard Customer Interface Specification as
  processors summarise it; the CIS itself is proprietary and was not read here: confirm with the acquirer.
- [VAL] Valitor "Automatic Fuel Dispenser" (audur-docs-authorization-collect-eu1.valitor.com/afd-evc/afd/):
  the AFD pre-authorization carries MCC 5542, pre-authorized request status, partial authorization
  supported, unattended terminal type; the advice carries the final amount.
- [IFSF] PayEx "ISO 8583:1993 (IFSF) H2H description": a terminal must ignore unknown fields in responses;
  advices (and only advices) are repeated (x221/x421) until acknowledged.
- [CMF] jPOS Common Message Format (github.com/jpos/jPOS-CMF, src/docx/data_elements.xml): DE 52 B8 ISO 9564
  PIN block, DE 32 N..11 LLVAR acquiring institution, DE 35 z..37 track 2 that also gives the PAN and expiry.
- [CNX] Conexxus Payment System Product Codes (the NACS three-digit list, registry of X9.104-2,
  www.conexxus.org/public-standards). The Conexxus PDF was not readable here; the codes used were checked
  against a processor's published transcription of the list, Global Payments java-sdk
  com.global.api.network.enums.NtsProductCode: 001 regular, 019 diesel #2, 062 DEF, 099 miscellaneous fuel.

Encoding: no header; MTI 4 ASCII digits; binary bitmaps; n/an/ans/z fields ASCII with ASCII LL/LLL
prefixes; b fields raw bytes (shown as upper-case hex strings).

Decisions where the 1987 table is silent or cannot carry our data:
- KSN: 1987 field 53 is n16, which holds no DUKPT key serial number (10 bytes TDES, 12 bytes AES). It goes in
  field 62 (reserved private, ans..999) as hex; field 53 is not sent.
- PIN: field 52 is b64 [ISO87], an ISO 9564-1 format 0 block [CMF]. The PIN pad holds one AES DUKPT initial
  key and derives from it, per transaction, a 2TDEA PIN-encryption working key (ANSI X9.24-3-2017 6.3.3,
  key type 2TDEA, usage 1000): the format 0 block is enciphered under that key, the AES KSN goes in field 62.
  DIALECT ("afd-1987") is this acquirer exactly by the 1987 table. DIALECT_AES_PIN ("afd-1987-aes-pin") is
  the same acquirer for a host that takes AES format 4 blocks (16 bytes): it widens field 52 to b128, which
  departs from 1987, and a strict 1987 host cannot parse its 0100 with a PIN.
- Completion: the 0220 carries the dispensed amount in field 4 [VAL]; the original is field 90.
"""

from __future__ import annotations

from typing import Any

from contracts.iso8583_dialect import PIN_ISO0_TDEA2, PIN_ISO4_AES, Dialect

__all__ = [
    "AMOUNT_TYPE_APPROVED",
    "DIALECT",
    "DIALECTS",
    "DIALECT_AES_PIN",
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
    "PRODUCT_CODES",
    "SPEC",
]


def _fixed(enc: str, length: int, desc: str) -> dict[str, Any]:
    return {"data_enc": enc, "len_enc": "ascii", "len_type": 0, "max_len": length, "desc": desc}


def _var(enc: str, digits: int, max_len: int, desc: str) -> dict[str, Any]:
    return {"data_enc": enc, "len_enc": "ascii", "len_type": digits, "max_len": max_len, "desc": desc}


_P = r"[ -~]"  # printable ASCII (ans)

# Field layouts [ISO87] unless the comment says otherwise.
SPEC: dict[str, dict[str, Any]] = {
    "h": _fixed("ascii", 0, "No message header"),
    "t": _fixed("ascii", 4, "Message type indicator"),
    "p": _fixed("b", 8, "Primary bitmap"),
    "1": _fixed("b", 8, "Secondary bitmap"),
    "2": _var("ascii", 2, 19, "Primary account number"),             # n..19
    "3": _fixed("ascii", 6, "Processing code"),                      # n6
    "4": _fixed("ascii", 12, "Amount, transaction"),                 # n12, minor units of field 49
    "7": _fixed("ascii", 10, "Transmission date and time"),          # n10 MMDDhhmmss GMT
    "11": _fixed("ascii", 6, "Systems trace audit number"),          # n6
    "12": _fixed("ascii", 6, "Time, local transaction"),             # n6 hhmmss
    "13": _fixed("ascii", 4, "Date, local transaction"),             # n4 MMDD
    "14": _fixed("ascii", 4, "Date, expiration"),                    # n4 YYMM
    "18": _fixed("ascii", 4, "Merchant type"),                       # n4, ISO 18245 MCC
    "22": _fixed("ascii", 3, "Point of service entry mode"),         # n3
    "23": _fixed("ascii", 3, "Card sequence number"),                # n3 (EMV 5F34)
    "25": _fixed("ascii", 2, "Point of service condition code"),     # n2
    "32": _var("ascii", 2, 11, "Acquiring institution id code"),     # n..11 [CMF]
    "35": _var("ascii", 2, 37, "Track 2 data"),                      # z..37 [CMF]
    "37": _fixed("ascii", 12, "Retrieval reference number"),         # an12
    "38": _fixed("ascii", 6, "Authorization identification response"),  # an6
    "39": _fixed("ascii", 2, "Response code"),                       # an2
    "41": _fixed("ascii", 8, "Card acceptor terminal id"),           # ans8
    "42": _fixed("ascii", 15, "Card acceptor id code"),              # ans15
    "43": _fixed("ascii", 40, "Card acceptor name/location"),        # ans40, layout [MC43]
    "48": _var("ascii", 3, 999, "Additional data, private"),         # ans..999, [MC48] subelements
    "49": _fixed("ascii", 3, "Currency code, transaction"),          # n3 ISO 4217
    "52": _fixed("b", 8, "PIN data"),                                # b64, ISO 9564 format 0 [CMF]
    "54": _var("ascii", 3, 120, "Additional amounts"),               # an..120
    "55": _var("b", 3, 255, "ICC system related data"),              # 1993 assignment, BER-TLV
    "61": _var("ascii", 3, 26, "Point-of-service data"),             # ans..999 private; [MC61] ans..26
    "62": _var("ascii", 3, 999, "Key serial number"),                # ans..999 private: DUKPT KSN, hex
    "63": _var("ascii", 3, 999, "Fuel data"),                        # ans..999 private: FuelLine groups
    "70": _fixed("ascii", 3, "Network management information code"),  # n3
    "90": _fixed("ascii", 42, "Original data elements"),             # n42
}

FORMATS: dict[str, str] = {
    "t": r"0100|0110|0220|0221|0230|0420|0421|0430|0800|0810", "p": r"[0-9A-F]{16}", "1": r"[0-9A-F]{16}",
    "2": r"\d{12,19}", "3": r"\d{6}", "4": r"\d{12}", "7": r"\d{10}", "11": r"\d{6}", "12": r"\d{6}",
    "13": r"\d{4}", "14": r"\d{4}", "18": r"\d{4}", "22": r"\d{3}", "23": r"\d{3}", "25": r"\d{2}",
    "32": r"\d{1,11}", "35": r"\d{12,19}=\d{4,20}", "37": r"[0-9A-Za-z ]{12}", "38": r"[0-9A-Za-z ]{6}",
    "39": r"[0-9A-Z]{2}", "41": _P + "{8}", "42": _P + "{15}",
    "43": _P + "{22} " + _P + "{13} (?:[A-Z]{3}|   )",
    "48": r"[A-Z](?:\d{4}[ -~]*)?", "49": r"\d{3}", "52": r"[0-9A-F]{16}", "54": r"(?:\d{7}[CD]\d{12}){1,6}",
    "55": r"(?:[0-9A-F]{2})*", "61": r"\d{9,11}", "62": r"(?:[0-9A-F]{2}){10,12}",
    "63": r"(?:\d{3}L\d{9}\d{9}\d{12}){1,9}", "70": r"\d{3}", "90": r"\d{42}",
}

# Fields each message must carry, checked by the simulated host ("2|35": PAN, or track 2 that holds it).
_REQUEST = ("3", "4", "7", "11", "12", "13", "18", "22", "25", "32", "41", "42", "43", "49")
MANDATORY: dict[str, tuple[str, ...]] = {
    "0100": ("2|35", *_REQUEST, "48", "61"),
    "0220": ("2", *_REQUEST, "37", "38", "63", "90"), "0221": ("2", *_REQUEST, "37", "38", "63", "90"),
    "0420": ("2", *_REQUEST, "39", "90"), "0421": ("2", *_REQUEST, "39", "90"),
    "0110": ("11", "39"), "0230": ("11", "39"), "0430": ("11", "39"),
    "0800": ("7", "11", "70"), "0810": ("7", "11", "39", "70"),
}

# Processing code 00 goods and services, default accounts. 1987 has no pre-authorization transaction type:
# the 0100 with condition code 06 "preauthorized request" is one, and the 0220 its completion.
PROC_GOODS_AND_SERVICES = "000000"
POS_CONDITION_PREAUTH = "06"
MCC_AUTOMATED_FUEL_DISPENSER = "5542"

# Field 22 [MC22]: PAN entry mode (2) + PIN entry capability (1). 05 ICC, 07 contactless, 80 chip fallback
# to stripe, 90 full unaltered track; 1 = can accept a PIN. This acquirer takes 80 for a fallback whatever
# the card's scheme and maps it to the scheme's own code (Visa's 90 with its chip condition code) itself.
ENTRY_CHIP_PIN = "051"
ENTRY_CONTACTLESS = "071"
ENTRY_MAGSTRIPE = "901"
ENTRY_MAGSTRIPE_NO_PIN = "902"
ENTRY_FALLBACK = "801"
ICC_ENTRY_MODES = frozenset({ENTRY_CHIP_PIN, ENTRY_CONTACTLESS})
MAGSTRIPE_ENTRY_MODES = frozenset({ENTRY_MAGSTRIPE, ENTRY_MAGSTRIPE_NO_PIN, ENTRY_FALLBACK})

# Field 54 amount type of the approved amount in a partial approval (response code 10): the amount-type
# codes are scheme-defined; this is the acquirer interface's private choice.
AMOUNT_TYPE_APPROVED = "90"

# [CNX] codes by the station's product names (fixtures/seed.toml); a product not listed goes as "other".
PRODUCT_CODES: dict[str, str] = {"petrol95": "001", "diesel": "019", "adblue": "062", "other": "099"}

_VALUES: dict[str, str] = {
    # [MC61] sf1 1 unattended, sf2 0, sf3 0 on premises, sf4 0 cardholder present, sf5 0 card present,
    # sf6 0 no card capture, sf7 4 pre-authorization request, sf8 0, sf9 0, sf10 2 CAT level 2.
    "pos_data_preauth": "1000004002",
    # the advices: sf7 0 normal (the completion of the pre-authorization)
    "pos_data_advice": "1000000002",
    # [MC48] TCC "R" retail, subelement 61 length 05: partial approval supported, rest 0.
    "additional_data_preauth": "R610510000",
    "additional_data_advice": "R",
    "acquirer_id_default": "000000",
    "network_echo": "301",      # field 70 of an echo test
}

_ROLES: dict[str, str] = {"pin_block": "52", "ksn": "62", "fuel": "63", "pos_data": "61",
                          "additional_data": "48", "acquirer_id": "32", "network_code": "70"}

DIALECT = Dialect(
    name="afd-1987", source="ISO 8583:1987 with Mastercard DE 43/48/61 usage; see contracts.iso8583_spec",
    spec=SPEC, formats=FORMATS, mandatory=MANDATORY, roles=_ROLES, values=_VALUES, pin_block=PIN_ISO0_TDEA2)

# The same acquirer taking AES PIN blocks: field 52 widened to b128 for an ISO 9564 format 4 block. This
# departs from ISO 8583:1987 (b64): only a host that agreed to the wider field can parse its PIN 0100.
DIALECT_AES_PIN = Dialect(
    name="afd-1987-aes-pin", source=DIALECT.source + "; field 52 widened to b128 (not 1987)",
    spec={**SPEC, "52": _fixed("b", 16, "PIN data")}, formats={**FORMATS, "52": r"[0-9A-F]{32}"},
    mandatory=MANDATORY, roles=_ROLES, values=_VALUES, pin_block=PIN_ISO4_AES)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (DIALECT, DIALECT_AES_PIN)}
