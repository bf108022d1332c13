"""Round trips of the card answers (fuzz/targets_card.py), bounded for `make test`; every target's
"parses or ends in CardError" property is in tests/test_fuzz_targets.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware import tlv
from firmware.emv.records import parse_afl
from fuzz.strategies import BOUNDED

# BER-TLV tags as ISO/IEC 8825-1 8.1.2 encodes them: one byte (low five bits not all set), or a first byte
# with them all set and subsequent bytes, bit 8 set on all but the last. 00 and FF are padding (EMV Book 3
# B1), not tags.
ONE_BYTE_TAGS = st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F)
TWO_BYTE_TAGS = st.tuples(st.integers(0, 6).map(lambda c: (c << 5) | 0x1F), st.integers(0x00, 0x7F)).map(
    lambda p: (p[0] << 8) | p[1])
OBJECTS = st.lists(st.tuples(st.one_of(ONE_BYTE_TAGS, TWO_BYTE_TAGS), st.binary(max_size=300)), max_size=6)


@BOUNDED
@given(OBJECTS)
def test_tlv_round_trip(objects: list[tuple[int, bytes]]) -> None:
    """parse(encode(objects)) == objects, lengths in every form (short, 81, 82)."""
    assert tlv.parse(b"".join(tlv.encode(t, v) for t, v in objects)) == objects


@BOUNDED
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 255), st.integers(0, 255), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_afl_round_trip(entries: list[tuple[int, int, int, int]]) -> None:
    """Book 3 10.2: SFI << 3, first, last, ODA count; a well-formed AFL parses to its entries."""
    valid = [(sfi, first, max(first, last), min(oda, max(first, last) - first + 1))
             for sfi, first, last, oda in entries]
    afl = bytes(b for sfi, first, last, oda in valid for b in (sfi << 3, first, last, oda))
    assert [(e.sfi, e.first, e.last, e.oda_count) for e in parse_afl(afl)] == valid
