"""The pump node's framed UART protocol (drivers/pulser/wire.py): CRC, frames, and a reader that never
trusts the line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import MessageError
from drivers.pulser import wire

frames = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=wire.MAX_PAYLOAD))


def read_all(reader: wire.Reader) -> list[tuple[int, int, bytes]]:
    out = []
    while (frame := reader.next()) is not None:
        out.append(frame)
    return out


def test_crc_check_value_from_the_reveng_catalogue() -> None:
    # reveng CRC catalogue, CRC-16/IBM-3740 (alias CRC-16/CCITT-FALSE): check=0x29b1, and 0xFFFF (init) of
    # no data
    assert wire.crc16(b"123456789") == 0x29B1
    assert wire.crc16(b"") == 0xFFFF
    assert wire.crc16(b"56789", wire.crc16(b"1234")) == 0x29B1      # the CRC runs on over chunks


def test_frame_layout() -> None:
    frame = wire.encode(7, wire.AUTHORIZE, b"\x01\x02")
    assert frame[:4] == bytes((wire.SOF, 2, 7, wire.AUTHORIZE)) and frame[4:6] == b"\x01\x02"
    assert int.from_bytes(frame[6:], "big") == wire.crc16(frame[1:6])


@given(frames)
def test_round_trip(frame: tuple[int, int, bytes]) -> None:
    reader = wire.Reader()
    reader.feed(wire.encode(*frame))
    assert reader.next() == frame
    assert reader.next() is None and reader.dropped == 0


@given(st.lists(frames, max_size=6), st.data())
def test_frames_fed_in_any_chunks(sent: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    stream = b"".join(wire.encode(*f) for f in sent)
    reader, got, at = wire.Reader(), [], 0
    while at < len(stream):
        size = data.draw(st.integers(1, 20))
        reader.feed(stream[at:at + size])
        at += size
        got += read_all(reader)
    assert got == sent


def test_encode_refuses_what_a_frame_cannot_hold() -> None:
    with pytest.raises(wire.WireError):
        wire.encode(1, wire.STATUS, bytes(wire.MAX_PAYLOAD + 1))
    with pytest.raises(wire.WireError):
        wire.encode(256, wire.STATUS, b"")
    with pytest.raises(MessageError):                 # one error hierarchy on the terminal
        wire.encode(1, -1, b"")


def test_fields() -> None:
    assert wire.put_u(0x1234, 2) == b"\x12\x34"
    assert wire.get_u(b"\x00\x12\x34", 1, 2) == 0x1234
    with pytest.raises(wire.WireError):
        wire.put_u(0x10000, 2)
    with pytest.raises(wire.WireError):
        wire.put_u(-1, 4)
    with pytest.raises(wire.WireError):
        wire.get_u(b"\x00", 0, 2)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_fuzzed_stream_never_raises_nor_yields_a_bad_frame(chunks: list[bytes]) -> None:
    reader = wire.Reader()
    stream = b"".join(chunks)
    for chunk in chunks:
        reader.feed(chunk)
        for seq, kind, payload in read_all(reader):
            # a frame comes out only if its bytes, CRC included, were on the line as they are
            assert wire.encode(seq, kind, payload) in stream


no_sof = st.binary(max_size=200).map(lambda b: b.replace(bytes((wire.SOF,)), b""))


@given(no_sof, st.lists(frames, max_size=4))
def test_resync_after_garbage(garbage: bytes, sent: list[tuple[int, int, bytes]]) -> None:
    reader = wire.Reader()
    reader.feed(garbage + b"".join(wire.encode(*f) for f in sent))
    assert read_all(reader) == sent


def test_resync_after_false_starts() -> None:
    good = wire.encode(9, wire.STATUS, b"")
    bad_crc = bytearray(wire.encode(3, wire.STOP, b"\x01"))
    bad_crc[-1] ^= 0xFF
    # a SOF with a length over the maximum, a frame with a broken CRC, a lone SOF, then a good frame
    line = bytes((wire.SOF, wire.MAX_PAYLOAD + 1)) + bytes(bad_crc) + bytes((wire.SOF,)) + good
    reader = wire.Reader()
    for byte in line:                                  # one byte at a time, as a UART gives them
        reader.feed(bytes((byte,)))
    assert read_all(reader) == [(9, wire.STATUS, b"")]
    assert reader.dropped >= 2


def test_a_babbling_line_does_not_grow_memory() -> None:
    reader = wire.Reader()
    for _ in range(1000):
        reader.feed(bytes((wire.SOF, wire.MAX_PAYLOAD)) + bytes(30))     # never completes a frame
        assert reader.next() is None
    assert reader.dropped > 0
    reader.feed(bytes(wire.MAX_PAYLOAD + 6) + wire.encode(1, wire.TOTALS, b""))
    assert (1, wire.TOTALS, b"") in read_all(reader)
