"""MQTT payloads of the chip purse between terminal and registry (docs/chip-wallet-registry.md): schemas as
data for contracts.messages.encode / decode, and typed views of the pieces the registry reads.

Bytes travel as lower-case hex: a signed record 120 digits, a purse or SAM id 16, a load id 32, a MAC 32.
Every payload has "v": 1 (contracts.messages). decode() names a bad field, never its value.

- PURSE_RECORDS (terminal -> registry): the signed records a terminal journaled, each with its SAM's
  sequence and MAC when the SAM gave them; also a line of a flash-drive bundle (contracts.usbbundle), where
  "kind" tells it from a SALE.
- PURSE_RECORDS_ACK: how many counted, were already there, were stored flagged without counting.
- LOAD_REQUEST / LOAD_GRANT / LOAD_CONFIRM: a top-up (contracts.purse_keys init_load_message, load_message).
- SCRIPTS_REQUEST / SCRIPTS_ANSWER / SCRIPTS_APPLIED: issuer scripts at an online contact, and the refund
  loads the registry owes the card (applied after the scripts, confirmed by their LOAD records).
- PURSE_ADVICE: the first terminal's figure for a reservation the card left pending.

>>> doc = {"kind": "purse_records", "terminal": "T-0001", "sam_id": "5341000000000001",
...        "items": [{"record": "50" * 60, "sam_seq": 7, "sam_mac": "00" * 16}]}
>>> decode(encode(doc, PURSE_RECORDS), PURSE_RECORDS)["items"][0]["sam_seq"]
7
>>> decode(encode(doc | {"items": [{"record": "5"}]}, PURSE_RECORDS), PURSE_RECORDS)
Traceback (most recent call last):
    ...
contracts.errors.MessageError: payload field is invalid (field=items)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.messages import Check, decode, encode, int_range, matching
from contracts.purse_keys import ID_LEN, MAC_LEN
from contracts.purse_records import SIGNED_LEN

__all__ = [
    "LOAD_CONFIRM",
    "LOAD_GRANT",
    "LOAD_REQUEST",
    "MAX_ITEMS",
    "PURSE_ADVICE",
    "PURSE_RECORDS",
    "PURSE_RECORDS_ACK",
    "PURSE_RECORDS_KIND",
    "SCRIPTS_ANSWER",
    "SCRIPTS_APPLIED",
    "SCRIPTS_REQUEST",
    "RecordItem",
    "decode",
    "encode",
    "is_purse_line",
    "record_items",
]

PURSE_RECORDS_KIND = "purse_records"
MAX_ITEMS = 200                   # records in one upload (a 60-byte record is about 250 bytes of JSON)
_U32 = 2**32 - 1


def _hex(n: int) -> Check:
    return matching(f"[0-9a-f]{{{2 * n}}}")


_ID, _MAC, _RECORD, _LOAD_ID = _hex(ID_LEN), _hex(MAC_LEN), _hex(SIGNED_LEN), _hex(16)
_TERMINAL = matching(r"[A-Za-z0-9_.-]{1,64}")
_UUID = matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_U32C, _WALLET, _UNIT = int_range(0, _U32), int_range(0, 7), int_range(1, 2)
_VERSION = int_range(1, 255)
_REASON = matching(r"[a-z_]{0,32}")


def _item(v: Any) -> bool:
    """{"record": hex} with "sam_seq" and "sam_mac" both or neither."""
    if not isinstance(v, dict) or "record" not in v or not set(v) <= {"record", "sam_seq", "sam_mac"}:
        return False
    if ("sam_seq" in v) != ("sam_mac" in v):
        return False
    return _RECORD(v["record"]) and ("sam_seq" not in v or (_U32C(v["sam_seq"]) and _MAC(v["sam_mac"])))


def _items(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= MAX_ITEMS and all(_item(i) for i in v)


def _script(v: Any) -> bool:
    return (isinstance(v, dict) and set(v) == {"script_id", "op", "counter", "message", "mac"}
            and int_range(1, 2**62)(v["script_id"]) and int_range(1, 5)(v["op"]) and _U32C(v["counter"])
            and matching(r"([0-9a-f]{2}){17,81}")(v["message"]) and _MAC(v["mac"]))


def _load(v: Any) -> bool:
    fields = {"load_id", "wallet", "amount", "unit", "counter", "key_version", "mac"}
    return (isinstance(v, dict) and set(v) == fields
            and _LOAD_ID(v["load_id"]) and _WALLET(v["wallet"]) and int_range(1, _U32)(v["amount"])
            and _UNIT(v["unit"]) and _U32C(v["counter"]) and _VERSION(v["key_version"]) and _MAC(v["mac"]))


PURSE_RECORDS: Mapping[str, Check] = {"kind": matching(PURSE_RECORDS_KIND), "terminal": _TERMINAL,
                                      "sam_id": _ID, "items": _items}
PURSE_RECORDS_ACK: Mapping[str, Check] = {"terminal": _TERMINAL, "counted": int_range(0, MAX_ITEMS),
                                          "duplicate": int_range(0, MAX_ITEMS),
                                          "flagged": int_range(0, MAX_ITEMS)}
LOAD_REQUEST: Mapping[str, Check] = {
    "load_id": _LOAD_ID, "terminal": _TERMINAL, "purse_id": _ID, "wallet": _WALLET, "counter": _U32C,
    "amount": int_range(1, _U32), "unit": _UNIT, "balance": _U32C, "key_version": _VERSION, "mac": _MAC}
LOAD_GRANT: Mapping[str, Check] = {
    "load_id": _LOAD_ID, "granted": lambda v: isinstance(v, bool), "reason": _REASON,
    "mac": matching(r"([0-9a-f]{32})?"), "key_version": int_range(0, 255), "counter": _U32C}
LOAD_CONFIRM: Mapping[str, Check] = {"load_id": _LOAD_ID, "terminal": _TERMINAL, "record": _RECORD}
SCRIPTS_REQUEST: Mapping[str, Check] = {"request_id": _UUID, "terminal": _TERMINAL, "purse_id": _ID,
                                        "counter": _U32C, "blocked": lambda v: isinstance(v, bool)}
SCRIPTS_ANSWER: Mapping[str, Check] = {
    "request_id": _UUID, "purse_id": _ID,
    "scripts": lambda v: isinstance(v, list) and len(v) <= 16 and all(_script(x) for x in v),
    # loads the registry owes the card (a recovered reserve's undelivered part), applied after the scripts
    "loads": lambda v: isinstance(v, list) and len(v) <= 8 and all(_load(x) for x in v)}
SCRIPTS_APPLIED: Mapping[str, Check] = {
    "terminal": _TERMINAL, "purse_id": _ID,
    "script_ids": lambda v: isinstance(v, list) and len(v) <= 16 and all(int_range(1, 2**62)(x) for x in v)}
PURSE_ADVICE: Mapping[str, Check] = {"terminal": _TERMINAL, "purse_id": _ID, "counter": _U32C,
                                     "amount": _U32C, "sale_id": _UUID}


@dataclass(frozen=True)
class RecordItem:
    """One record of an upload, as bytes."""

    record: bytes
    sam_seq: int | None = None
    sam_mac: bytes | None = None


def record_items(doc: Mapping[str, Any]) -> list[RecordItem]:
    """The items of a decoded PURSE_RECORDS payload as bytes."""
    out = []
    for item in doc["items"]:
        mac = item.get("sam_mac")
        out.append(RecordItem(bytes.fromhex(item["record"]), item.get("sam_seq"),
                              bytes.fromhex(mac) if mac is not None else None))
    return out


def is_purse_line(line: bytes) -> bool:
    """Whether a bundle line is a PURSE_RECORDS payload (not a SALE): decodes it and says; MessageError when
    it claims the kind but is not a valid one.

    >>> is_purse_line(b'{"v":1,"sale_id":"x"}')
    False
    """
    if b'"kind":"purse_records"' not in line:
        return False
    decode(line, PURSE_RECORDS)
    return True
