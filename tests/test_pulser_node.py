"""The pump node's request handler (drivers/pulser/node.py) spoken to in real frames: one reply a request,
a retry answered from the last reply, NAKs, and a restart from the board's flash store."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.pulser import meter, wire
from drivers.pulser.board import FlashStore
from drivers.pulser.meter import PulserCore
from drivers.pulser.node import PumpNode, decode_status, decode_totals
from drivers.pulser.node_sim import MemoryStore

K = 100000
CONFIG = wire.put_u(K, 4) + wire.put_u(50, 2)


def preset(price: int, volume_cl: int) -> bytes:
    return wire.put_u(price, 4) + bytes((meter.BY_VOLUME,)) + wire.put_u(volume_cl, 4)


class Line:
    """The terminal's end of the node's UART: frames out, the reply frames back."""

    def __init__(self, node: PumpNode) -> None:
        self.node, self.now = node, 0

    def raw(self, frame: bytes) -> bytes:
        return self.node.receive(frame, self.now)

    def ask(self, seq: int, kind: int, payload: bytes = b"") -> tuple[int, bytes]:
        reader = wire.Reader()
        reader.feed(self.raw(wire.encode(seq, kind, payload)))
        frame = reader.next()
        assert frame is not None and frame[0] == seq and reader.next() is None
        return frame[1], frame[2]

    def status(self, seq: int) -> dict[str, int]:
        kind, body = self.ask(seq, wire.STATUS)
        assert kind == wire.STATUS | wire.REPLY
        return decode_status(body)


def test_status_of_a_new_node() -> None:
    line = Line(PumpNode(PulserCore()))
    st = line.status(1)
    assert (st["boot"], st["state"], st["flags"], st["count"]) == (1, meter.IDLE, 16, 0)   # not calibrated


def test_retry_is_answered_from_the_last_reply_without_acting_twice() -> None:
    line = Line(PumpNode(PulserCore(k_milli=K)))
    frame = wire.encode(5, wire.AUTHORIZE, preset(1659, 1000))
    first = line.raw(frame)
    assert line.raw(frame) == first                   # the reply was lost: the same answer again
    assert line.node.core.number == 1 and line.node.core.state == meter.AUTHORIZED
    kind, body = line.ask(6, wire.AUTHORIZE, preset(1659, 1000))       # a new request is acted on
    assert (kind, body) == (wire.NAK, bytes((wire.NAK_BUSY,)))
    assert line.node.core.number == 1


def test_garbage_and_two_frames_in_one_read() -> None:
    line = Line(PumpNode(PulserCore(k_milli=K)))
    out = line.raw(b"\x00\xa5\x40" + wire.encode(1, wire.STATUS, b"") + wire.encode(2, wire.STOP, b""))
    reader = wire.Reader()
    reader.feed(out)
    assert [f[:2] for f in (reader.next(), reader.next()) if f] == [(1, wire.STATUS | wire.REPLY),
                                                                  (2, wire.STOP | wire.REPLY)]


@pytest.mark.parametrize(("kind", "payload", "code"), [
    (0x30, b"", wire.NAK_TYPE),
    (wire.STATUS, b"\x00", wire.NAK_LENGTH),
    (wire.AUTHORIZE, b"\x00" * 8, wire.NAK_LENGTH),
    (wire.AUTHORIZE, preset(1659, 0), wire.NAK_UNCONFIGURED),
    (wire.CONFIG, wire.put_u(10, 4) + wire.put_u(50, 2), wire.NAK_VALUE),   # K-factor out of range
])
def test_naks(kind: int, payload: bytes, code: int) -> None:
    line = Line(PumpNode(PulserCore()))
    assert line.ask(1, kind, payload) == (wire.NAK, bytes((code,)))


def test_calibration_refused_while_a_filling_runs() -> None:
    line = Line(PumpNode(PulserCore(k_milli=K)))
    assert line.ask(1, wire.AUTHORIZE, preset(1659, 0))[0] == wire.AUTHORIZE | wire.REPLY
    line.node.core.nozzle(True, 0)
    assert line.ask(2, wire.CONFIG, CONFIG) == (wire.NAK, bytes((wire.NAK_BUSY,)))
    assert line.ask(3, wire.RESET) == (wire.NAK, bytes((wire.NAK_BUSY,)))


def test_a_sale_through_the_handler() -> None:
    line = Line(PumpNode(PulserCore()))
    assert line.ask(1, wire.CONFIG, CONFIG)[0] == wire.CONFIG | wire.REPLY
    line.ask(2, wire.AUTHORIZE, preset(1659, 300))
    line.node.core.nozzle(True, 0)
    st = line.status(3)
    assert (st["state"], st["flags"]) == (meter.FILLING, 1 | 2 | 4)            # nozzle out, both stages
    for _ in range(300):
        line.node.core.pulses(1, 10)
    line.now = 10 + meter.SETTLE_MS
    line.node.tick(line.now)
    st = line.status(4)
    assert (st["state"], st["volume_cl"], st["amount_cents"], st["price"]) == (meter.MAX_REACHED, 300, 498,
                                                                             1659)
    kind, body = line.ask(5, wire.TOTALS)
    assert kind == wire.TOTALS | wire.REPLY and decode_totals(body) == (300, 498, 300)


def test_restart_restores_the_store_and_counts_a_boot(tmp_path: Path) -> None:
    store = FlashStore(str(tmp_path / "pulser.json"))
    assert store.load() is None
    node = PumpNode(PulserCore(k_milli=K), store)
    line = Line(node)
    line.ask(1, wire.AUTHORIZE, preset(1659, 0))
    node.core.nozzle(True, 0)
    node.core.pulses(120, 1)
    node.save(1 + node.save_ms)                      # kept: 120 pulses
    node.core.pulses(30, 2)                          # lost in the power cut
    again = Line(PumpNode(PulserCore(), store))
    st = again.status(1)
    assert (st["boot"], st["state"], st["volume_cl"], st["flags"] & 16) == (2, meter.COMPLETED, 120, 0)
    assert decode_totals(again.ask(2, wire.TOTALS)[1])[0] == 120
    third = Line(PumpNode(PulserCore(), store))
    assert third.status(1)["boot"] == 3
    assert decode_totals(third.ask(2, wire.TOTALS)[1])[0] == 120         # settled once
    assert not list(tmp_path.glob("*.tmp"))                               # written, then renamed


def test_a_damaged_store_keeps_the_node_down(tmp_path: Path) -> None:
    (tmp_path / "pulser.json").write_text("{\"v\": 1, ")
    with pytest.raises(ValueError):
        PumpNode(PulserCore(), FlashStore(str(tmp_path / "pulser.json")))


def test_saves_on_a_change_of_state_and_at_most_every_save_ms_while_pulses_come() -> None:
    store = MemoryStore()
    node = PumpNode(PulserCore(k_milli=K), store, save_ms=200)
    assert store.saves == 1
    node.core.authorize(1659)
    node.tick(10)
    assert store.saves == 2 and store.snap is not None and store.snap["state"] == meter.AUTHORIZED
    node.core.nozzle(True, 10)
    node.tick(11)                                     # a new state: saved at once
    for now in range(12, 400):
        node.core.pulses(1, now)
        node.tick(now)
    assert 3 <= store.saves <= 3 + 400 // 200
    assert store.snap is not None and store.snap["boots"] == 1
