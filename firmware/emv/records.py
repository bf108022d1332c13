"""Initiate application processing (GET PROCESSING OPTIONS) and read the application data per the AFL.

EMV 4.4 Book 3 10.1 (initiate), 10.2 (read application data), 10.3 (static data for ODA), 6.5.8, 6.5.11.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import CardError, MessageError
from firmware import tlv
from firmware.emv.apdu import Transmitter, exchange, get_processing_options, read_record, single_template
from firmware.emv.data import DataStore, build_dol

__all__ = ["MANDATORY_TAGS", "AflEntry", "ConditionsNotSatisfied", "ProcessingOptions", "initiate",
           "parse_afl", "read_application_data"]

MANDATORY_TAGS = (0x5A, 0x5F24, 0x8C, 0x8D)     # Book 3 7.2, table 27
MAX_RECORD = 254                                 # a record fits one short response with its 70 header


class ConditionsNotSatisfied(CardError):
    """GPO answered 6985: the application cannot be used here; try the next candidate (Book 3 10.1)."""


@dataclass(frozen=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    oda_count: int


@dataclass(frozen=True)
class ProcessingOptions:
    aip: bytes
    afl: tuple[AflEntry, ...]
    pdol_data: bytes       # the values sent in 83, needed again for the CDA transaction data hash


def parse_afl(afl: bytes) -> tuple[AflEntry, ...]:
    """Four bytes per entry: SFI << 3, first record, last record, records for ODA (Book 3 10.2)."""
    if not afl or len(afl) % 4:
        raise CardError("AFL length is not a positive multiple of 4", length=len(afl))
    out = []
    for i in range(0, len(afl), 4):
        sfi_byte, first, last, oda = afl[i:i + 4]
        sfi = sfi_byte >> 3
        if sfi_byte & 0x07 or not 1 <= sfi <= 30:
            raise CardError("AFL names an invalid SFI", entry=i // 4, sfi=sfi)
        if first == 0 or last < first:
            raise CardError("AFL record range is invalid", entry=i // 4, first=first, last=last)
        if oda > last - first + 1:
            raise CardError("AFL asks ODA over more records than it lists", entry=i // 4)
        out.append(AflEntry(sfi, first, last, oda))
    return tuple(out)


def _single(data: bytes) -> bool:
    try:
        tlv.parse_single(data)
    except MessageError:
        return False
    return True


def initiate(reader: Transmitter, store: DataStore, pdol: bytes) -> ProcessingOptions:
    """GET PROCESSING OPTIONS with the PDOL data (empty 83 without a PDOL); format 1 or 2 answer."""
    pdol_data = build_dol(pdol, store) if pdol else b""
    resp = exchange(reader, get_processing_options(pdol_data), "gpo")
    if resp.sw == 0x6985:
        raise ConditionsNotSatisfied("card refused GET PROCESSING OPTIONS", sw=resp.swhex)
    if not resp.ok:
        raise CardError("GET PROCESSING OPTIONS failed", sw=resp.swhex)
    tag, value = single_template(resp.data, "gpo", 0x80, 0x77)
    if tag == 0x80:   # format 1: AIP then AFL, bare (Book 3 6.5.8.4)
        if len(value) < 2:
            raise CardError("GPO format 1 answer too short", length=len(value))
        aip, afl = value[:2], value[2:]
    else:
        try:
            fields = tlv.parse_unique(value)
        except MessageError as exc:
            raise CardError("GPO format 2 answer is malformed", **exc.context) from exc
        if 0x82 not in fields or 0x94 not in fields or len(fields[0x82]) != 2:
            raise CardError("GPO format 2 answer lacks AIP or AFL")
        aip, afl = fields[0x82], fields[0x94]
        for t, v in fields.items():
            if t not in (0x82, 0x94) and not tlv.is_constructed(t):
                store.set_from_card(t, v)
    entries = parse_afl(afl)
    store.set_from_card(0x82, aip)
    store.set_from_card(0x94, afl)
    return ProcessingOptions(aip=aip, afl=entries, pdol_data=pdol_data)


def read_application_data(reader: Transmitter, store: DataStore, afl: tuple[AflEntry, ...]) -> bytes | None:
    """READ RECORD every record the AFL lists; return the ODA input of the flagged records, or None when
    a flagged record cannot serve for ODA (so ODA fails, Book 3 10.3)."""
    oda_data = bytearray()
    oda_ok = True
    for entry in afl:
        for number in range(entry.first, entry.last + 1):
            resp = exchange(reader, read_record(entry.sfi, number), "read_record")
            if not resp.ok:
                raise CardError("READ RECORD failed", sfi=entry.sfi, record=number, sw=resp.swhex)
            if len(resp.data) > MAX_RECORD + 3:
                raise CardError("record is too long", sfi=entry.sfi, record=number, length=len(resp.data))
            flagged = number < entry.first + entry.oda_count
            try:
                objects = tlv.parse(resp.data)
            except MessageError as exc:
                raise CardError("record is not valid BER-TLV", sfi=entry.sfi, record=number) from exc
            # Book 3 10.2: a record is one template 70; padding or bytes after it make it malformed
            is_70 = len(objects) == 1 and objects[0][0] == 0x70 and _single(resp.data)
            if entry.sfi <= 10 and not is_70:
                raise CardError("record is not a 70 template", sfi=entry.sfi, record=number)
            if is_70:
                store.add_record(objects[0][1])
            if flagged:
                if entry.sfi <= 10:          # SFI 1-10: the template's value only
                    oda_data += objects[0][1]
                elif is_70:                  # SFI 11-30: the whole record, tag and length included
                    oda_data += resp.data
                else:
                    oda_ok = False
    missing = [f"{t:X}" for t in MANDATORY_TAGS if not store.get(t)]
    if missing:
        raise CardError("card lacks mandatory data", tags=",".join(missing))
    return bytes(oda_data) if oda_ok else None
