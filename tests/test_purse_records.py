"""contracts.purse_records: the purchase record's layout round-trips, a malformed one is a typed error."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import MessageError
from contracts.purse_keys import Purpose, Unit, derive_card_key
from contracts.purse_records import (
    RECORD_LEN,
    SIGNED_LEN,
    Kind,
    PurchaseRecord,
    RecordError,
    decode,
    encode,
    open_signed,
    sign,
)

MASTER = bytes(range(16))
CARD = bytes.fromhex("7077000000000019")
KEY = derive_card_key(MASTER, CARD, Purpose.RECORD, version=1)
RECORD = PurchaseRecord(key_version=1, kind=Kind.PURCHASE, card_id=CARD, wallet=3, counter=0x01020304,
                        amount=2000, unit=Unit.VOLUME, product=19, terminal=b"SAM00001", time=1_800_000_000,
                        previous_balance=10000, new_balance=8000)


def test_layout_field_by_field() -> None:
    raw = encode(RECORD)
    assert len(raw) == RECORD_LEN == 44
    assert raw == (b"\x50\x01\x01\x01" + CARD + b"\x03" + bytes.fromhex("01020304")
                   + (2000).to_bytes(4, "big") + b"\x02" + (19).to_bytes(2, "big") + b"SAM00001"
                   + (1_800_000_000).to_bytes(4, "big") + (10000).to_bytes(4, "big")
                   + (8000).to_bytes(4, "big"))


def test_signed_record_round_trips_and_any_changed_byte_fails() -> None:
    signed = sign(KEY, RECORD)
    assert len(signed) == SIGNED_LEN == 60
    assert open_signed(KEY, signed) == RECORD
    for i in range(SIGNED_LEN):
        changed = bytearray(signed)
        changed[i] ^= 0x01
        with pytest.raises(RecordError) as info:
            open_signed(KEY, bytes(changed))
        assert info.value.reason == "bad_mac"


def test_another_cards_key_does_not_open_it() -> None:
    other = derive_card_key(MASTER, bytes(8), Purpose.RECORD, version=1)
    with pytest.raises(RecordError, match="MAC"):
        open_signed(other, sign(KEY, RECORD))


@pytest.mark.parametrize(("offset", "value", "reason"), [
    (0, 0x4C, "type"), (1, 0x02, "format"), (2, 0x00, "key_version"), (3, 0x00, "kind"),
    (3, 0x04, "kind"), (3, 0x03, "product"), (12, 0x08, "wallet"), (21, 0x00, "unit"), (21, 0x03, "unit"),
    (22, 0x04, "product"),
    (43, 0x41, "balance"),
])
def test_malformed_record_names_its_reason(offset: int, value: int, reason: str) -> None:
    raw = bytearray(encode(RECORD))
    raw[offset] = value
    with pytest.raises(RecordError) as info:
        decode(bytes(raw))
    assert info.value.reason == reason
    assert isinstance(info.value, MessageError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [b"", encode(RECORD)[:-1], encode(RECORD) + b"\x00"])
def test_wrong_length_is_a_record_error(raw: bytes) -> None:
    with pytest.raises(RecordError) as info:
        decode(raw)
    assert info.value.reason == "length"
    with pytest.raises(RecordError):
        open_signed(KEY, raw)


@pytest.mark.parametrize("change", [
    {"wallet": 8}, {"product": 1000}, {"counter": -1}, {"time": 2**32}, {"card_id": CARD[:7]},
    {"terminal": b"T-1"}, {"key_version": 256}, {"new_balance": 8001}, {"amount": 10001, "new_balance": 0},
])
def test_a_record_no_card_would_write_cannot_be_made(change: dict[str, object]) -> None:
    with pytest.raises(RecordError):
        dataclasses.replace(RECORD, **change)  # type: ignore[arg-type]


u32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def records(draw: st.DrawFn) -> PurchaseRecord:
    previous = draw(u32)
    kind = draw(st.sampled_from(Kind))
    if kind is Kind.LOAD:            # a credit: the new balance is the larger, and no product
        amount = draw(st.integers(min_value=0, max_value=2**32 - 1 - previous))
        new, product = previous + amount, 0
    else:
        amount = draw(st.integers(min_value=0, max_value=previous))
        new, product = previous - amount, draw(st.integers(0, 999))
    return PurchaseRecord(
        key_version=draw(st.integers(1, 255)), kind=kind,
        card_id=draw(st.binary(min_size=8, max_size=8)), wallet=draw(st.integers(0, 7)), counter=draw(u32),
        amount=amount, unit=draw(st.sampled_from(Unit)), product=product,
        terminal=draw(st.binary(min_size=8, max_size=8)), time=draw(u32), previous_balance=previous,
        new_balance=new)


@settings(max_examples=100, deadline=None)
@given(record=records())
def test_every_record_round_trips(record: PurchaseRecord) -> None:
    assert decode(encode(record)) == record
    assert open_signed(KEY, sign(KEY, record)) == record


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=0, max_size=SIGNED_LEN + 4))
def test_any_bytes_decode_to_a_record_that_re_encodes_or_raise_a_record_error(raw: bytes) -> None:
    try:
        record = decode(raw)
    except RecordError:
        return
    assert encode(record) == raw
