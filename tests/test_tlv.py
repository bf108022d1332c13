"""firmware.tlv: strict BER-TLV (ISO/IEC 8825-1 / X.690, EMV Book 3 annex B)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import MessageError
from firmware import tlv

# Published vector: the FCI of the Payment System Environment, EMV 4.3 Book 1 section 11.3.4 (table 43),
# quoted in most EMV tutorials: 6F (FCI) > 84 (DF name "1PAY.SYS.DDF01") + A5 (proprietary template) >
# 88 (SFI of the directory = 1), 5F2D (language "en"), 9F11 (issuer code table index = 1).
PSE_FCI = bytes.fromhex("6F1E840E315041592E5359532E4444463031A50C8801015F2D02656E9F110101")


def test_published_pse_fci() -> None:
    [(tag, value)] = tlv.parse(PSE_FCI)
    assert tag == 0x6F and len(value) == 0x1E
    assert tlv.parse(value) == [(0x84, b"1PAY.SYS.DDF01"),
                                (0xA5, bytes.fromhex("8801015F2D02656E9F110101"))]
    assert tlv.parse(tlv.parse(value)[1][1]) == [(0x88, b"\x01"), (0x5F2D, b"en"), (0x9F11, b"\x01")]
    assert tlv.find(PSE_FCI, 0x84) == b"1PAY.SYS.DDF01"
    assert tlv.find(PSE_FCI, 0x5F2D) == b"en"           # two levels down
    assert tlv.find(PSE_FCI, 0x9F11) == b"\x01"
    assert tlv.find(PSE_FCI, 0x9F38) is None
    # and the encoder rebuilds it byte for byte
    a5 = tlv.encode(0xA5, tlv.encode(0x88, b"\x01") + tlv.encode(0x5F2D, b"en") + tlv.encode(0x9F11, b"\x01"))
    assert tlv.encode(0x6F, tlv.encode(0x84, b"1PAY.SYS.DDF01") + a5) == PSE_FCI


@pytest.mark.parametrize(("data", "tag", "value"), [
    (bytes.fromhex("9F0206000000001000"), 0x9F02, bytes.fromhex("000000001000")),   # amount, authorised
    (bytes.fromhex("5F2403291231"), 0x5F24, bytes.fromhex("291231")),               # application expiry
    (bytes.fromhex("BF0C03C10100"), 0xBF0C, bytes.fromhex("C10100")),               # FCI issuer discretionary
    (bytes.fromhex("DF8101020102"), 0xDF8101, b"\x01\x02"),                        # three-byte tag
    (bytes.fromhex("5A00"), 0x5A, b""),                                             # empty value
])
def test_multi_byte_tags(data: bytes, tag: int, value: bytes) -> None:
    assert tlv.parse(data) == [(tag, value)]
    assert tlv.encode(tag, value) == data


def test_four_byte_tag_is_the_longest_allowed() -> None:
    assert tlv.parse(bytes.fromhex("DF8181010100")) == [(0xDF818101, b"\x00")]
    with pytest.raises(MessageError, match="longer than 4"):
        tlv.parse(bytes.fromhex("DF81818101" "0100"))


def test_long_length_forms() -> None:
    # X.690 8.1.3.5, NOTE 2: L = 201 is encoded 81 C9
    data = bytes.fromhex("5081C9") + b"x" * 201
    assert tlv.parse(data) == [(0x50, b"x" * 201)]
    assert tlv.encode(0x50, b"x" * 201) == data
    big = bytes.fromhex("70820123") + b"y" * 0x123
    assert tlv.parse(big) == [(0x70, b"y" * 0x123)]
    assert tlv.encode(0x70, b"y" * 0x123) == big
    # a long form may also carry a short length (BER allows it; DER would not)
    assert tlv.parse(bytes.fromhex("5A8102AABB")) == [(0x5A, b"\xaa\xbb")]
    assert tlv.parse(bytes.fromhex("5A830000021234")) == [(0x5A, b"\x12\x34")]


@pytest.mark.parametrize(("n", "head"), [(0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"),
                                         (0x100, "820100"), (0xFFFF, "82FFFF")])
def test_encode_length_boundaries(n: int, head: str) -> None:
    out = tlv.encode(0x5A, bytes(n))
    assert out[:1 + len(head) // 2] == bytes.fromhex("5A" + head)
    assert tlv.parse(out) == [(0x5A, bytes(n))]


def test_padding_between_objects_is_skipped() -> None:
    # EMV Book 3 annex B1: 00 and FF may precede, follow or sit between data objects
    data = bytes.fromhex("00FF" "5A0112" "0000" "9F0201AB" "FFFF00")
    assert tlv.parse(data) == [(0x5A, b"\x12"), (0x9F02, b"\xab")]
    assert tlv.parse(b"\x00\xff\x00") == []
    assert tlv.parse(b"") == []


def test_padding_bytes_inside_a_value_are_data() -> None:
    assert tlv.parse(bytes.fromhex("5A0300FF00")) == [(0x5A, b"\x00\xff\x00")]


def test_find_nested_depth_first_and_first_hit() -> None:
    inner = tlv.encode(0xA5, tlv.encode(0xBF0C, tlv.encode(0x9F4D, b"\x0b\x0a") + tlv.encode(0x50, b"deep")))
    data = tlv.encode(0x6F, tlv.encode(0x84, b"AID") + inner) + tlv.encode(0x50, b"top")
    assert tlv.find(data, 0x9F4D) == b"\x0b\x0a"
    assert tlv.find(data, 0x50) == b"deep"        # depth-first: the nested one comes first
    assert tlv.find(data, 0xBF0C) is not None
    assert tlv.find(data, 0x5F20) is None


def test_find_does_not_descend_into_primitive_values() -> None:
    # 5A is primitive: its bytes look like a 50 object but are not searched
    data = tlv.encode(0x5A, tlv.encode(0x50, b"hidden"))
    assert tlv.find(data, 0x50) is None
    assert tlv.find(tlv.encode(0x70, tlv.encode(0x50, b"seen")), 0x50) == b"seen"


def test_find_in_malformed_constructed_value_raises() -> None:
    with pytest.raises(MessageError):
        tlv.find(bytes.fromhex("6F035A05AA"), 0x84)


@pytest.mark.parametrize(("tag", "constructed"), [(0x6F, True), (0x70, True), (0xA5, True), (0xBF0C, True),
                                                  (0x5A, False), (0x9F02, False), (0x84, False),
                                                  (0x5F24, False), (0xFF8101, True), (0xDF8101, False)])
def test_is_constructed(tag: int, constructed: bool) -> None:
    assert tlv.is_constructed(tag) is constructed


@pytest.mark.parametrize(("data", "why"), [
    (bytes.fromhex("9F"), "tag truncated"),
    (bytes.fromhex("5F"), "tag truncated"),
    (bytes.fromhex("DF81"), "tag truncated"),
    (bytes.fromhex("5A"), "length missing"),
    (bytes.fromhex("9F02"), "length missing"),
    (bytes.fromhex("5A81"), "length truncated"),
    (bytes.fromhex("5A8201"), "length truncated"),
    (bytes.fromhex("5A830000"), "length truncated"),
    (bytes.fromhex("5A80"), "length form"),               # indefinite length: not allowed
    (bytes.fromhex("5A840000000100"), "length form"),     # 4 length bytes
    (bytes.fromhex("5AFF"), "length form"),
    (bytes.fromhex("5A02AA"), "value truncated"),
    (bytes.fromhex("5A8105AABB"), "value truncated"),
    (bytes.fromhex("5A01AA" "9F0203AA"), "value truncated"),  # second object truncated
])
def test_malformed_raises_message_error(data: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        tlv.parse(data)


def test_value_truncated_error_names_tag_and_length() -> None:
    with pytest.raises(MessageError) as info:
        tlv.parse(bytes.fromhex("9F0206AABB"))
    assert info.value.context == {"tag": "9F02", "length": 6}


def test_encode_value_over_64k_round_trips() -> None:
    value = bytes(0x10000)
    assert tlv.parse(tlv.encode(0x5A, value)) == [(0x5A, value)]


# Tags that encode() can write and parse() reads back: a 1-byte tag whose low five bits are not 11111,
# not a padding byte; or a multi-byte tag with continuation bits on all but the last subsequent byte.
_SINGLE = st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F)
_MULTI = st.builds(
    lambda first, middle, last: int.from_bytes(bytes([first | 0x1F, *middle, last]), "big"),
    st.sampled_from([0x40, 0x80, 0xC0, 0x20, 0x60, 0xA0, 0xE0]) | st.just(0x5F & 0xE0),
    st.lists(st.integers(0x80, 0xFF), max_size=2),
    st.integers(0x01, 0x7F))
_TAG = _SINGLE | _MULTI.filter(lambda t: t.to_bytes((t.bit_length() + 7) // 8, "big")[0] != 0xFF)


@settings(max_examples=200, deadline=None)
@given(objs=st.lists(st.tuples(_TAG, st.binary(max_size=300)), max_size=6),
       pad=st.lists(st.sampled_from([b"", b"\x00", b"\xff", b"\x00\x00"]), min_size=7, max_size=7))
def test_encode_parse_round_trip(objs: list[tuple[int, bytes]], pad: list[bytes]) -> None:
    data = pad[0] + b"".join(tlv.encode(t, v) + pad[i + 1] for i, (t, v) in enumerate(objs))
    assert tlv.parse(data) == objs


_PRIMITIVE = _TAG.filter(lambda t: not tlv.is_constructed(t))


@settings(max_examples=150, deadline=None)
@given(tag=_TAG.filter(tlv.is_constructed),
       children=st.lists(st.tuples(_PRIMITIVE, st.binary(max_size=40)), min_size=1, max_size=4,
                         unique_by=lambda c: c[0]))
def test_find_locates_every_child_of_a_template(tag: int, children: list[tuple[int, bytes]]) -> None:
    data = tlv.encode(tag, b"".join(tlv.encode(t, v) for t, v in children))
    assert tlv.find(data, tag) == b"".join(tlv.encode(t, v) for t, v in children)
    for t, v in children:
        assert tlv.find(data, t) == v
    # and one level deeper still
    assert tlv.find(tlv.encode(0x6F, data), children[-1][0]) == children[-1][1]


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64))
def test_parse_of_arbitrary_bytes_raises_only_message_error(data: bytes) -> None:
    try:
        out = tlv.parse(data)
    except MessageError:
        return
    for tag, value in out:
        assert isinstance(tag, int) and isinstance(value, bytes)
        assert len(value) <= len(data)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64), tag=st.integers(0, 0xFFFFFFFF))
def test_find_of_arbitrary_bytes_raises_only_message_error(data: bytes, tag: int) -> None:
    try:
        hit = tlv.find(data, tag)
    except MessageError:
        return
    assert hit is None or isinstance(hit, bytes)


@settings(max_examples=300, deadline=None)
@given(objs=st.lists(st.tuples(_TAG, st.binary(min_size=1, max_size=50)), min_size=1, max_size=3),
       cut=st.integers(1, 10))
def test_any_truncation_of_the_last_object_is_an_error(objs: list[tuple[int, bytes]], cut: int) -> None:
    data = b"".join(tlv.encode(t, v) for t, v in objs)
    last = tlv.encode(*objs[-1])
    cut = min(cut, len(last) - 1)
    with pytest.raises(MessageError):
        tlv.parse(data[:-cut])


def test_parse_unique_rejects_a_repeated_tag() -> None:
    from firmware.tlv import parse_unique

    assert parse_unique(bytes.fromhex("5A02123482021900")) == {0x5A: b"\x12\x34", 0x82: b"\x19\x00"}
    with pytest.raises(MessageError, match="repeats"):
        parse_unique(bytes.fromhex("5A0212345A024321"))


def nested(levels: int, inner: bytes = bytes.fromhex("5A0112")) -> bytes:
    for _ in range(levels):
        inner = tlv.encode(0x70, inner)
    return inner


def test_find_in_1000_nested_templates_is_a_message_error_not_recursion() -> None:
    """Issue 10: depth is bounded by tlv.MAX_DEPTH; before, 1,000 templates raised RecursionError."""
    with pytest.raises(MessageError, match="nested too deeply"):
        tlv.find(nested(1000), 0x5A)
    assert tlv.find(nested(tlv.MAX_DEPTH), 0x5A) == b"\x12"       # the limit itself is allowed


def test_parse_single_wants_exactly_one_object() -> None:
    assert tlv.parse_single(bytes.fromhex("70035A0112")) == (0x70, bytes.fromhex("5A0112"))
    for bad in ("70035A0112FFFF", "0070035A0112", "70035A011270035A0112", "", "7003"):
        with pytest.raises(MessageError):
            tlv.parse_single(bytes.fromhex(bad))
