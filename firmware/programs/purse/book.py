"""What the terminal keeps about chip purse purchases, in the journal's key-value store.

- Which sale a reservation belongs to, by purse and counter (written before RESERVE goes to the card), so
  a purse that comes back with that reservation still pending is completed with the figure this terminal
  journaled for the sale (docs/chip-wallets.md, COMPLETE PENDING at the same terminal).
- The advices: the figure of a sale whose card left before it settled, for the issuer's completion at the
  card's next online contact elsewhere.
- The outbox: every signed record the card gave (a purchase, a completion, a load), with the SAM's sequence
  number and MAC, until the registry has acknowledged it. Keyed by purse and counter, so a record read
  twice (the card's log forwarded again) is kept once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from contracts.purse_records import RECORD_LEN
from contracts.purse_records import decode as decode_record
from firmware.sale.journal import Journal

__all__ = ["Outgoing", "PurseBook"]

_SALE = "purse_sale:"
_OUT = "purse_out:"
_ADVICE = "purse_advice:"


@dataclass(frozen=True)
class Outgoing:
    """One signed record on its way to the registry."""

    key: str
    signed: bytes
    sam_sequence: int | None
    sam_mac: bytes | None
    sam_id: bytes | None = None       # the SAM that MACed it (this terminal's)

    def message(self) -> dict[str, object]:
        """The record as the purse_records service request carries it."""
        doc: dict[str, object] = {"record": self.signed.hex()}
        if self.sam_sequence is not None and self.sam_mac is not None:
            doc |= {"sam_seq": self.sam_sequence, "sam_mac": self.sam_mac.hex()}
        return doc


class PurseBook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def expect(self, purse_id: bytes, counter: int, sale_id: str) -> None:
        self.journal.put(f"{_SALE}{purse_id.hex()}:{counter}", sale_id)

    def sale_for(self, purse_id: bytes, counter: int) -> str | None:
        return self.journal.get_value(f"{_SALE}{purse_id.hex()}:{counter}")

    def queue(self, signed: bytes, sam_sequence: int | None = None, sam_mac: bytes | None = None,
              sam_id: bytes | None = None) -> str:
        """Keep a signed record for the registry, once per purse and counter (a copy with the SAM's MAC
        replaces one kept without); returns its key."""
        record = decode_record(signed[:RECORD_LEN])
        key = f"{_OUT}{record.card_id.hex()}:{record.counter:010d}"      # sorts by counter
        kept = self.journal.get_value(key)
        if kept is None or (sam_mac is not None and json.loads(kept).get("sam_mac") is None):
            doc = {"signed": signed.hex(), "sam_sequence": sam_sequence,
                   "sam_mac": sam_mac.hex() if sam_mac is not None else None,
                   "sam_id": sam_id.hex() if sam_id is not None else None}
            self.journal.put(key, json.dumps(doc))
        return key

    def outgoing(self) -> list[Outgoing]:
        """The records waiting, by purse, each purse's in counter order."""
        out = []
        for key, raw in sorted(self.journal.values(_OUT).items()):
            doc = json.loads(raw)
            mac, sam = doc.get("sam_mac"), doc.get("sam_id")
            out.append(Outgoing(key, bytes.fromhex(doc["signed"]), doc.get("sam_sequence"),
                                bytes.fromhex(mac) if mac else None, bytes.fromhex(sam) if sam else None))
        return out

    def sent(self, keys: list[str]) -> None:
        self.journal.put_many({}, deletes=tuple(keys))

    def advise(self, purse_id: bytes, counter: int, amount: int, sale_id: str) -> None:
        """Tell the registry the figure of a reservation the card left pending here."""
        doc = {"purse_id": purse_id.hex(), "counter": counter, "amount": amount, "sale_id": sale_id}
        self.journal.put(f"{_ADVICE}{purse_id.hex()}:{counter}", json.dumps(doc))

    def advices(self) -> dict[str, dict[str, object]]:
        return {k: json.loads(v) for k, v in sorted(self.journal.values(_ADVICE).items())}
