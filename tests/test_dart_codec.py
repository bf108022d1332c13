"""Wayne DART codec: published vectors (Wayne DART line protocol / application protocol spec), CRC-16/ARC
check value, BCD, 0xFA escaping, frame splitting and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import MessageError
from drivers.pump import dart

POLL_1 = bytes.fromhex("50 20 FA")
EOT_1 = bytes.fromhex("50 70 FA")
AUTHORIZE_TX7 = bytes.fromhex("50 37 01 01 06 1E 2A 03 FA")
STATUS_REPLY_TX6 = bytes.fromhex("50 36 01 01 02 03 04 00 21 80 11 0E 48 03 FA")


# -- vectors -------------------------------------------------------------------------------------------
def test_poll_vector() -> None:
    assert dart.encode_short(0x50, dart.POLL) == POLL_1
    f = dart.decode(POLL_1)
    assert (f.addr, f.kind, f.txn, f.transactions, f.pump) == (0x50, dart.POLL, 0, [], 1)


def test_eot_vector() -> None:
    assert dart.encode_short(dart.pump_address(1), dart.EOT, 0) == EOT_1
    assert dart.decode(EOT_1) == dart.Frame(0x50, dart.EOT, 0)


def test_authorize_vector() -> None:
    assert dart.encode_data(0x50, 7, [(dart.CD1, bytes([dart.CMD_AUTHORIZE]))]) == AUTHORIZE_TX7
    f = dart.decode(AUTHORIZE_TX7)
    assert (f.kind, f.txn, f.transactions) == (dart.DATA, 7, [(0x01, b"\x06")])


def test_status_reply_vector() -> None:
    f = dart.decode(STATUS_REPLY_TX6)
    assert (f.addr, f.kind, f.txn) == (0x50, dart.DATA, 6)
    assert f.transactions == [(dart.DC1, b"\x02"), (dart.DC3, bytes.fromhex("00218011"))]
    price, nozzle = f.transactions[1][1][:3], f.transactions[1][1][3]
    assert dart.bcd_decode(price) == 2180
    assert nozzle & dart.NOZZLE_OUT and nozzle & 0x0F == 1
    assert dart.encode_frame(f) == STATUS_REPLY_TX6


def test_crc16_arc_check_value() -> None:
    assert dart.crc16(b"123456789") == 0xBB3D
    assert dart.crc16(b"") == 0
    assert dart.crc16(bytes.fromhex("5037010106")) == 0x2A1E


# -- BCD -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "n", "raw"), [
    (0, 4, "00000000"), (1000, 4, "00001000"), (2180, 3, "002180"), (99999999, 4, "99999999"),
    (1234567890, 5, "1234567890"), (7, 1, "07"),
])
def test_bcd(value: int, n: int, raw: str) -> None:
    assert dart.bcd_encode(value, n) == bytes.fromhex(raw)
    assert dart.bcd_decode(bytes.fromhex(raw)) == value


@pytest.mark.parametrize(("value", "n"), [(-1, 4), (100000000, 4), (100, 1)])
def test_bcd_out_of_range(value: int, n: int) -> None:
    with pytest.raises(dart.BcdError):
        dart.bcd_encode(value, n)


@pytest.mark.parametrize("raw", ["0A", "A0", "FA", "12F4"])
def test_bcd_bad_nibble(raw: str) -> None:
    with pytest.raises(dart.BcdError) as exc:
        dart.bcd_decode(bytes.fromhex(raw))
    assert isinstance(exc.value, MessageError)   # one hierarchy on CPython


@given(st.integers(min_value=0, max_value=10**10 - 1))
def test_bcd_roundtrip(value: int) -> None:
    assert dart.bcd_decode(dart.bcd_encode(value, 5)) == value


# -- escaping ------------------------------------------------------------------------------------------
def test_escape_fa_in_data() -> None:
    raw = dart.encode_data(0x51, 1, [(dart.CD5, bytes([0x00, 0xFA, 0x10]))])
    body = bytes([0x51, 0x31, 0x05, 0x03, 0x00, 0xFA, 0x10])
    crc = dart.crc16(body)          # the inserted 0x10 is not in the CRC
    assert raw[:8] == bytes([0x51, 0x31, 0x05, 0x03, 0x00, 0x10, 0xFA, 0x10])
    assert raw.count(0xFA) == 2 and raw.endswith(b"\x03\xfa")
    assert dart.decode(raw).transactions == [(dart.CD5, b"\x00\xfa\x10")]
    assert raw[8:-2] == dart.escape(bytes([crc & 0xFF, crc >> 8]))


def test_escape_unescape_pairs() -> None:
    assert dart.escape(b"\xfa") == b"\x10\xfa"
    assert dart.escape(b"\x10\xfa") == b"\x10\x10\xfa"
    assert dart.unescape(b"\x10\x10\xfa") == b"\x10\xfa"
    assert dart.unescape(b"\x10\x01") == b"\x10\x01"
    with pytest.raises(dart.FrameError):
        dart.unescape(b"\x01\xfa\x02")


def _find_crc(byte_index: int) -> tuple[bytes, int]:
    for b in range(256):
        for c in range(256):
            data = bytes([b, c])
            crc = dart.crc16(bytes([0x50, 0x30, 0x05, 0x02]) + data)
            if (crc >> (8 * byte_index)) & 0xFF == 0xFA:
                return data, crc
    raise AssertionError("no payload found")


@pytest.mark.parametrize("byte_index", [0, 1])
def test_escape_fa_in_crc(byte_index: int) -> None:
    data, crc = _find_crc(byte_index)
    raw = dart.encode_data(0x50, 0, [(0x05, data)])
    wire_crc = dart.escape(bytes([crc & 0xFF, crc >> 8]))
    assert b"\x10\xfa" in wire_crc and raw.endswith(wire_crc + b"\x03\xfa")
    assert dart.decode(raw).transactions == [(0x05, data)]
    frames = dart.FrameSplitter().feed(raw)
    assert frames == [raw]


# -- decode errors -------------------------------------------------------------------------------------
def test_bad_crc_is_crc_error() -> None:
    bad = bytearray(AUTHORIZE_TX7)
    bad[4] = 0x05
    with pytest.raises(dart.CrcError) as exc:
        dart.decode(bytes(bad))
    assert isinstance(exc.value, dart.DartError) and "want" in exc.value.context


@pytest.mark.parametrize("raw", [
    "", "50", "50 20", "50 20 FB", "40 20 FA", "50 80 FA", "50 21 FA", "50 20 00 FA",
    "50 30 03 FA", "50 37 01 01 06 1E 2A 04 FA", "50 37 01 01 FA 06 1E 2A 03 FA",
])
def test_bad_framing_is_frame_error(raw: str) -> None:
    with pytest.raises(dart.FrameError):
        dart.decode(bytes.fromhex(raw))


@pytest.mark.parametrize("payload", ["01 05 06", "01", "01 01 06 02"])
def test_transaction_lengths_must_fill_the_frame(payload: str) -> None:
    body = bytes.fromhex("50 37 " + payload)
    crc = dart.crc16(body)
    raw = body[:2] + dart.escape(body[2:] + bytes([crc & 0xFF, crc >> 8])) + b"\x03\xfa"
    with pytest.raises(dart.FrameError):
        dart.decode(raw)


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(dart.FrameError):
        dart.encode_short(0x70, dart.POLL)
    with pytest.raises(dart.FrameError):
        dart.encode_data(0x50, 16, [(1, b"\x00")])
    with pytest.raises(dart.FrameError):
        dart.encode_data(0x50, 1, [])
    with pytest.raises(dart.FrameError):
        dart.pump_address(33)


# -- TX# rules -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("last", "txn", "verdict"), [
    (-1, 9, dart.RX_ACCEPT), (3, 4, dart.RX_ACCEPT), (3, 3, dart.RX_DUPLICATE), (3, 5, dart.RX_REJECT),
    (3, 0, dart.RX_ACCEPT), (0xF, 0, dart.RX_ACCEPT), (0xF, 1, dart.RX_ACCEPT), (0, 1, dart.RX_ACCEPT),
    (0, 0, dart.RX_ACCEPT), (0xF, 2, dart.RX_REJECT), (1, 1, dart.RX_DUPLICATE),
])
def test_rx_verdict(last: int, txn: int, verdict: int) -> None:
    assert dart.rx_verdict(last, txn) == verdict


def test_next_txn_skips_zero() -> None:
    seq = [0]
    for _ in range(17):
        seq.append(dart.next_txn(seq[-1]))
    assert seq == [0, *range(1, 16), 1, 2]


# -- splitter ------------------------------------------------------------------------------------------
def test_splitter_byte_by_byte_and_garbage() -> None:
    sp = dart.FrameSplitter()
    stream = b"\x00\x13\xff" + POLL_1 + AUTHORIZE_TX7 + b"\x01" + STATUS_REPLY_TX6
    out = []
    for b in stream:
        out.extend(sp.feed(bytes([b])))
    assert out == [POLL_1, AUTHORIZE_TX7, STATUS_REPLY_TX6]
    assert sp.dropped == 4


def test_splitter_resyncs_after_garbage_with_stop_flag() -> None:
    sp = dart.FrameSplitter()
    frames = sp.feed(b"\x55\x01\x02\xfa" + EOT_1)
    assert len(frames) == 2 and frames[1] == EOT_1
    with pytest.raises(dart.DartError):
        dart.decode(frames[0])
    # noise that looks like an address in front of a good frame costs nothing with decode_resync
    assert dart.decode_resync(b"\x55\x00" + AUTHORIZE_TX7).txn == 7


def test_splitter_drops_overlong_garbage() -> None:
    sp = dart.FrameSplitter(max_frame=20)
    assert sp.feed(b"\x50" + b"\x01" * 50) == []
    assert sp.feed(POLL_1) == [POLL_1]


# -- properties ----------------------------------------------------------------------------------------
_spicy = st.lists(st.sampled_from([0xFA, 0x10, 0x03, 0x00, 0xFF, 0x50]) | st.integers(0, 255),
                  max_size=20).map(bytes)
_transactions = st.lists(st.tuples(st.integers(0, 255), _spicy), min_size=1, max_size=5)


@given(addr=st.integers(dart.ADDR_FIRST, dart.ADDR_LAST), txn=st.integers(0, 15), trans=_transactions,
       cut=st.lists(st.integers(1, 7), max_size=30))
def test_data_frame_roundtrip(addr: int, txn: int, trans: list[tuple[int, bytes]], cut: list[int]) -> None:
    raw = dart.encode_data(addr, txn, trans)
    assert raw.endswith(b"\x03\xfa")
    f = dart.decode(raw)
    assert (f.addr, f.kind, f.txn, f.transactions) == (addr, dart.DATA, txn, trans)
    # the splitter finds the same frames however the stream is chunked
    stream = raw + dart.encode_short(addr, dart.ACK, txn) + raw
    sp = dart.FrameSplitter()
    got: list[bytes] = []
    i = 0
    for n in cut:
        got.extend(sp.feed(stream[i:i + n]))
        i += n
    got.extend(sp.feed(stream[i:]))
    assert got == [raw, dart.encode_short(addr, dart.ACK, txn), raw]


@given(st.binary(max_size=64))
def test_hostile_input_raises_only_dart_errors(raw: bytes) -> None:
    try:
        dart.decode(raw)
    except dart.DartError:
        pass
    for frame in dart.FrameSplitter().feed(raw):
        try:
            dart.decode_resync(frame)
        except dart.DartError:
            pass
    try:
        dart.bcd_decode(raw)
    except dart.BcdError:
        pass


@given(raw=st.binary(min_size=1, max_size=40), pos=st.integers(0, 39), flip=st.integers(1, 255))
def test_corrupted_frame_never_crashes(raw: bytes, pos: int, flip: int) -> None:
    frame = bytearray(dart.encode_data(0x50, 3, [(1, raw)]))
    frame[pos % len(frame)] ^= flip
    try:
        f = dart.decode(bytes(frame))
    except dart.DartError:
        return
    assert f.addr in range(0x50, 0x70)
