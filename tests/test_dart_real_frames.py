"""The controller fed the frames real Wayne pumps sent (tests/vectors/dart/real_frames.json, sources in its
README): each reply updates its status the way the real controller's next frames show it should.

The far end is a replaying port: it answers the controller's POLLs of a pump with the real frames queued
for it (EOT when none is left), ACKs the controller's data frames and records them. Where a step needs an
answer no capture holds, the test builds it and says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import MessageError
from contracts.pump import PumpState
from drivers.pump import DartController, dart, layouts

VECTORS = Path(__file__).parent / "vectors" / "dart" / "real_frames.json"
REAL = {f["what"]: bytes.fromhex(f["hex"]) for f in json.loads(VECTORS.read_text())["frames"]}
WAIT = 3.0


def real(prefix: str) -> bytes:
    """The real frame whose description starts with prefix, e.g. real("51 3C")."""
    for f in json.loads(VECTORS.read_text())["frames"]:
        if f["hex"].startswith(prefix):
            return bytes.fromhex(f["hex"])
    raise KeyError(prefix)


class ReplayPort:
    """pyserial-shaped; answers POLLs from per-pump queues and ACKs data frames; thread-safe enough for the
    controller's single poll thread plus the test thread queueing replies."""

    def __init__(self) -> None:
        self.timeout: float | None = 0.01
        self.rx = bytearray()
        self.lock = threading.RLock()
        self.replies: dict[int, deque[bytes]] = {}
        self.received: list[dart.Frame] = []
        self.on_data: Any = None                  # callback(frame) when the controller sends data
        self._split = dart.FrameSplitter()

    def queue(self, pump: int, *frames: bytes) -> None:
        with self.lock:
            self.replies.setdefault(pump, deque()).extend(frames)

    def write(self, data: bytes) -> int:
        for raw in self._split.feed(data):
            frame = dart.decode(raw)
            with self.lock:
                if frame.kind == dart.POLL:
                    q = self.replies.get(frame.pump)
                    self.rx += q.popleft() if q else dart.encode_short(frame.addr, dart.EOT)
                elif frame.kind == dart.DATA:
                    self.received.append(frame)
                    self.rx += dart.encode_short(frame.addr, dart.ACK, frame.txn)
                    if self.on_data is not None:
                        self.on_data(frame)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        with self.lock:
            out = bytes(self.rx[:size])
            del self.rx[:size]
        if not out:
            time.sleep(0.002)
        return out

    def reset_input_buffer(self) -> None:
        with self.lock:
            self.rx.clear()

    def close(self) -> None:
        pass

    def data(self, pump: int) -> list[tuple[int, bytes]]:
        with self.lock:
            return [t for f in self.received if f.pump == pump for t in f.transactions]


def controller(port: ReplayPort, pumps: list[int], decimals: tuple[int, int, int] | None) -> DartController:
    c = DartController("replay://", pumps, reply_timeout=0.02, poll_interval=0.002, command_timeout=2.0,
                       decimals=decimals, serial_factory=lambda url, **kw: port)
    c.start()
    return c


def synthetic(addr: int, txn: int, *transactions: tuple[int, bytes]) -> bytes:
    """An answer no capture holds, built with our encoder (marked as such at each use)."""
    return dart.encode_data(addr, txn, list(transactions))


def totals_answers(port: ReplayPort, pump: int, volume: bytes, amount: bytes) -> None:
    """Answer the controller's CD101 COUN 01 with `volume`, COUN 11 with `amount`, when they come."""
    def answer(frame: dart.Frame) -> None:
        if frame.transactions == [(dart.CD101, b"\x01")]:
            port.queue(pump, volume)
        elif frame.transactions == [(dart.CD101, b"\x11")]:
            port.queue(pump, amount)
    port.on_data = answer


def test_real_reply_with_totals_updates_status_and_totals() -> None:
    """Pump 1's real frame: DC2 0/0, DC3 9907 nozzle 7 in, DC1 FILLING COMPLETE, DC101 COUN 01."""
    port = ReplayPort()
    port.queue(1, real("50 30 02 08"))
    with controller(port, [1], decimals=(2, 2, 3)) as c:
        st = c.wait_status(1, lambda s: s.state != PumpState.OFFLINE, WAIT)
        assert (st.state, st.volume_cl, st.amount_cents) == (PumpState.FILLING_COMPLETED, 0, 0)
        assert (st.price_milli, st.nozzle, st.nozzle_out) == (9907, 7, False)
        port.queue(1, real("50 31 01 01 05"))      # its next reply: DC1 5 + DC3, nothing changes
        c.wait_status(1, lambda s: s.seq > st.seq, WAIT)
        assert c.status(1).state == PumpState.FILLING_COMPLETED and c.status(1).price_milli == 9907
        # the real controller then asks COUN 01 (50 32 65 01 01) and the pump answers DC101 (50 32 65 10)
        totals_answers(port, 1, real("50 32 65 10"),
                       synthetic(0x50, 3, (dart.DC101, layouts.encode_dc101(0x11, 22171582))))  # built
        t = c.totals(1, 1)
        assert (t.volume_cl, t.amount_cents) == (1336384966, 22171582)
        assert [d for code, d in port.data(1) if code == dart.CD101] == [b"\x01", b"\x11"]


def test_totals_are_asked_by_counter_id_and_wrong_ids_refused() -> None:
    port = ReplayPort()
    port.queue(2, real("51 3A 02 08"))
    with controller(port, [2], decimals=(3, 0, 0)) as c:
        c.wait_status(2, lambda s: s.state != PumpState.OFFLINE, WAIT)
        port.queue(2, real("51 3B 02 08"), real("51 3C"))     # the capture's next replies, TX# B and C
        # DC3 00 11 75 at no price decimals: 1175 a litre, 1 175 000 thousandths
        c.wait_status(2, lambda s: s.price_milli == 1_175_000 and s.seq >= 3, WAIT)
        with pytest.raises(MessageError):
            c.totals(2, 9)                         # DART counts nozzles 1..8 only
        totals_answers(port, 2, real("51 3D 65 10"),     # COUN 01 = 2 (real)
                       synthetic(0x51, 0xE, (dart.DC101, layouts.encode_dc101(0x11, 3))))   # built
        t = c.totals(2, 1)
        assert (t.volume_cl, t.amount_cents) == (0, 300)  # 0.002 L at 3 volume decimals, 3 units at none


def test_programming_a_real_pump_that_answers_filling_complete() -> None:
    """The real CD5 reply (DC1 5 + DC3 1175, seen after CD5 on a lab Wayne): set_prices() must not wait for
    a RESET the pump never reports; it resets the pump itself. The CD5 we send equals the real one."""
    port = ReplayPort()
    port.queue(2, synthetic(0x51, 0xB, (dart.DC1, bytes((dart.ST_NOT_PROGRAMMED,)))))   # built: no capture

    def answer(frame: dart.Frame) -> None:
        if frame.transactions[0][0] == dart.CD5:
            port.queue(2, real("51 3C"))           # DC1 5 + DC3 price 1175, nozzle 1 in
        elif (dart.CD1, bytes((dart.CMD_RESET,))) in frame.transactions:
            port.queue(2, synthetic(0x51, 0xD, (dart.DC1, bytes((dart.ST_RESET,)))))       # built
    port.on_data = answer
    with controller(port, [2], decimals=(2, 2, 0)) as c:
        c.wait_status(2, lambda s: s.state == PumpState.NOT_PROGRAMMED, WAIT)
        c.set_prices(2, {1: 1_175_000})            # 1175 a litre, the pump shows no price decimals
        assert c.status(2).state == PumpState.RESET
        cd5 = [d for code, d in port.data(2) if code == dart.CD5]
        assert cd5 == [dart.decode(real("51 34 05 03")).transactions[0][1]]    # 00 11 75, byte for byte
        with pytest.raises(MessageError):
            c.set_prices(2, {1: 1_175_500})        # 1175.5 cannot be shown without decimals: refused


def test_status_8_suspended_is_a_paused_filling(caplog: pytest.LogCaptureFixture) -> None:
    port = ReplayPort()
    port.queue(1, synthetic(0x50, 1, (dart.DC1, bytes((dart.ST_AUTHORIZED,)))),     # built: no capture
               synthetic(0x50, 2, (dart.DC1, bytes((dart.ST_SUSPENDED,)))))
    with caplog.at_level("INFO", logger="drivers.pump.controller"), controller(port, [1], (2, 2, 3)) as c:
        c.wait_status(1, lambda s: s.state == PumpState.FILLING, WAIT)
    assert "dart unknown status" not in caplog.text
