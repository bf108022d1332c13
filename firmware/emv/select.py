"""Application selection: PSE directory, then the terminal's AID list; candidate list; final SELECT.

EMV 4.4 Book 1 section 12 (contact). select_ppse() is the contactless entry point (EMV Book B 3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.errors import CardError, CardNotAccepted, MessageError
from firmware import tlv
from firmware.emv.apdu import Transmitter, exchange, read_record, select
from firmware.emv.config import AidConfig

__all__ = ["PPSE", "PSE", "Candidate", "CandidateList", "SelectedApp", "build_candidate_list",
           "final_select", "select_ppse"]

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
_MAX_OCCURRENCES = 16     # partial-name loop guard
_MAX_DIRECTORY_RECORDS = 32


@dataclass(frozen=True)
class Candidate:
    aid: bytes
    label: str = ""
    preferred_name: str = ""
    priority: int | None = None        # 87 bits 4-1, 1 = highest; None = no priority
    needs_confirmation: bool = False   # 87 bit 8 (Book 1 12.2.3)
    kernel_id: bytes = b""             # 9F2A, contactless only

    @property
    def display_name(self) -> str:
        return self.preferred_name or self.label or self.aid.hex().upper()


@dataclass(frozen=True)
class CandidateList:
    candidates: tuple[Candidate, ...]
    confirmation_needed: bool          # the UI must let the cardholder choose or confirm (Book 1 12.4)


@dataclass(frozen=True)
class SelectedApp:
    """The parsed FCI of the final SELECT (Book 1 11.3.4, table 45)."""

    aid: bytes                         # 84 DF name
    label: str = ""
    preferred_name: str = ""
    pdol: bytes = b""
    language: str = ""                 # 5F2D
    priority: int | None = None
    issuer_code_table: int | None = None
    fci_objects: dict[int, bytes] = field(default_factory=dict)


def _text(raw: bytes | None) -> str:
    if not raw:
        return ""
    return "".join(ch if ch.isprintable() else "?" for ch in raw.decode("latin-1"))[:32]


def _priority(raw: bytes | None) -> tuple[int | None, bool]:
    if not raw or len(raw) != 1:
        return None, False
    value = raw[0] & 0x0F
    return (value or None), bool(raw[0] & 0x80)


def _candidate(entry: dict[int, bytes], aid: bytes) -> Candidate:
    priority, confirm = _priority(entry.get(0x87))
    return Candidate(aid=aid, label=_text(entry.get(0x50)), preferred_name=_text(entry.get(0x9F12)),
                     priority=priority, needs_confirmation=confirm, kernel_id=entry.get(0x9F2A, b""))


def _matches(adf: bytes, aids: Sequence[AidConfig]) -> bool:
    return any(adf == a.aid or (a.partial_match and adf.startswith(a.aid)) for a in aids)


def _sorted(found: list[Candidate]) -> CandidateList:
    # Stable sort: prioritised entries first by priority, unprioritised after, in the order found.
    ordered = sorted(found, key=lambda c: c.priority if c.priority is not None else 16)
    return CandidateList(tuple(ordered), bool(ordered) and ordered[0].needs_confirmation)


def _pse_candidates(reader: Transmitter, aids: Sequence[AidConfig]) -> list[Candidate] | None:
    """Book 1 12.3.2. None means: use the list of AIDs instead."""
    resp = exchange(reader, select(PSE), "select_pse")
    if resp.sw == 0x6A81:
        raise CardNotAccepted("card is blocked or does not support SELECT", sw=resp.swhex)
    if not resp.ok:
        return None
    try:
        sfi_raw = tlv.find(tlv.find(resp.data, 0x6F) or b"", 0x88)
    except MessageError:
        return None
    if sfi_raw is None or len(sfi_raw) != 1 or not 1 <= sfi_raw[0] <= 10:
        return None
    found: list[Candidate] = []
    for number in range(1, _MAX_DIRECTORY_RECORDS + 1):
        rec = exchange(reader, read_record(sfi_raw[0], number), "read_pse")
        if rec.sw == 0x6A83:
            break
        if not rec.ok:
            return None
        try:
            template, body = tlv.parse_single(rec.data)     # exactly one 70 template (Book 1 12.2.3)
            if template != 0x70:
                return None
            for tag, value in tlv.parse(body):
                if tag != 0x61:
                    continue
                entry = dict(tlv.parse(value))
                adf = entry.get(0x4F)     # a DDF entry (9D) is not followed: EMV cards list ADFs directly
                if adf is not None and 5 <= len(adf) <= 16 and _matches(adf, aids):
                    found.append(_candidate(entry, adf))
        except MessageError:
            return None
    return found or None


def _aid_list_candidates(reader: Transmitter, aids: Sequence[AidConfig]) -> list[Candidate]:
    """Book 1 12.3.3: SELECT each terminal AID, following next occurrences for partial names."""
    found: list[Candidate] = []
    for entry in aids:
        next_occurrence = False
        for _ in range(_MAX_OCCURRENCES):
            resp = exchange(reader, select(entry.aid, next_occurrence=next_occurrence), "select_aid")
            if resp.sw == 0x6A81 and not next_occurrence:
                raise CardNotAccepted("card is blocked or does not support SELECT", sw=resp.swhex)
            if resp.sw not in (0x9000, 0x6283):
                break
            try:
                fci = dict(tlv.parse(tlv.find(resp.data, 0x6F) or b""))
                prop = dict(tlv.parse(fci.get(0xA5, b"")))
            except MessageError:
                break
            name = fci.get(0x84, b"")
            if resp.sw == 0x6283 and not name:
                # a blocked application whose FCI did not come (Book 1 12.3.3 steps 5-6): not a candidate,
                # but the card may hold further occurrences of a partial name
                if not entry.partial_match:
                    break
                next_occurrence = True
                continue
            if name == entry.aid:
                if resp.ok:
                    found.append(_candidate(prop, name))
                break
            if not (entry.partial_match and name.startswith(entry.aid) and len(name) > len(entry.aid)):
                break
            if resp.ok and all(c.aid != name for c in found):
                found.append(_candidate(prop, name))
            next_occurrence = True
    return found


def build_candidate_list(reader: Transmitter, aids: Sequence[AidConfig]) -> CandidateList:
    """The mutually supported applications, highest priority first; CardNotAccepted if none."""
    found = _pse_candidates(reader, aids)
    if found is None:
        found = _aid_list_candidates(reader, aids)
    if not found:
        raise CardNotAccepted("card has no application this terminal accepts")
    return _sorted(found)


def final_select(reader: Transmitter, aid: bytes) -> SelectedApp:
    """SELECT the chosen ADF and parse its FCI; CardError means: drop this candidate (Book 1 12.4)."""
    resp = exchange(reader, select(aid), "final_select")
    if not resp.ok:
        raise CardError("final SELECT refused", sw=resp.swhex)
    try:
        outer = tlv.parse(resp.data)
        if len(outer) != 1 or outer[0][0] != 0x6F:
            raise CardError("FCI is not a 6F template")
        fci = dict(tlv.parse(outer[0][1]))
        prop = dict(tlv.parse(fci.get(0xA5, b"")))
    except MessageError as exc:
        raise CardError("FCI is not valid BER-TLV") from exc
    name = fci.get(0x84)
    if name is None or 0xA5 not in fci or name != aid and not name.startswith(aid):
        raise CardError("FCI lacks the DF name or its proprietary template")
    priority, _ = _priority(prop.get(0x87))
    table = prop.get(0x9F11)
    return SelectedApp(
        aid=name, label=_text(prop.get(0x50)), preferred_name=_text(prop.get(0x9F12)),
        pdol=prop.get(0x9F38, b""), language=_text(prop.get(0x5F2D)).lower(), priority=priority,
        issuer_code_table=int(table.hex()) if table and len(table) == 1 and table.hex().isdigit() else None,
        fci_objects={0x84: name, **prop})


def select_ppse(reader: Transmitter) -> CandidateList:
    """Contactless: SELECT the PPSE and list its directory entries (EMV Book B 3.3), no filtering."""
    resp = exchange(reader, select(PPSE), "select_ppse")
    if not resp.ok:
        raise CardNotAccepted("card has no PPSE", sw=resp.swhex)
    found: list[Candidate] = []
    try:
        fci = tlv.find(resp.data, 0x6F) or b""
        directory = tlv.find(fci, 0xBF0C) or b""
        for tag, value in tlv.parse(directory):
            if tag == 0x61:
                entry = dict(tlv.parse(value))
                adf = entry.get(0x4F)
                if adf is not None and 5 <= len(adf) <= 16:
                    found.append(_candidate(entry, adf))
    except MessageError as exc:
        raise CardError("PPSE FCI is not valid BER-TLV") from exc
    if not found:
        raise CardNotAccepted("PPSE lists no application")
    return _sorted(found)
