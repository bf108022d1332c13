"""DART master link layer: every retry and TX# rule of the Wayne DART line protocol spec.

Most tests need no device: the far end is a function from frame to reply bytes (the simulated pump's
handle(), or a script) and a fake clock advances as the link reads an empty line, so reply windows cost
no wall time. The tests at the end talk to the pump line of --device-url (tests/conftest.py): the
simulator on a pty by default, or a bench line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import serial  # type: ignore[import-untyped]

from contracts.errors import PumpLinkError, PumpTimeout
from drivers.pump import dart
from drivers.pump.link import DartLink
from drivers.pump.sim_line import DartLineSimulator
from drivers.pump.simulator import SimPump
from tests.conftest import PumpLine

Peer = Callable[[dart.Frame], "bytes | None"]


class FakeLine:
    """pyserial-shaped port; what the link writes is answered at once by `peer`."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.timeout: float | None = 0.01
        self.now = 0.0
        self.rx = bytearray()
        self.written: list[dart.Frame] = []
        self.raw_written: list[bytes] = []
        self._split = dart.FrameSplitter()

    def clock(self) -> float:
        return self.now

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def write(self, data: bytes) -> int:
        for raw in self._split.feed(data):
            self.raw_written.append(raw)
            frame = dart.decode(raw)
            self.written.append(frame)
            reply = self.peer(frame)
            if reply:
                self.rx.extend(reply)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self.rx:
            self.now += self.timeout or 0.01
            return b""
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def data_frames(self) -> list[dart.Frame]:
        return [f for f in self.written if f.kind == dart.DATA]


def make_link(peer: Peer, **kw: object) -> tuple[DartLink, FakeLine]:
    line = FakeLine(peer)
    return DartLink(line, reply_timeout=0.05, clock=line.clock, **kw), line  # type: ignore[arg-type]


def scripted(*replies: bytes | None) -> Peer:
    """Answer polls with the given replies in turn (then EOT); ignore ACK/NAK."""
    queue = list(replies)

    def peer(frame: dart.Frame) -> bytes | None:
        if frame.kind != dart.POLL:
            return None
        return queue.pop(0) if queue else dart.encode_short(frame.addr, dart.EOT)
    return peer


def status_frame(txn: int, state: int = dart.ST_RESET, addr: int = 0x50) -> bytes:
    return dart.encode_data(addr, txn, [(dart.DC1, bytes([state]))])


# -- polls: pump -> master ---------------------------------------------------------------------------
def test_poll_acks_data_then_eot() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle)
    assert not link.online(1)
    assert link.poll(1) == [(dart.DC1, bytes([dart.ST_NOT_PROGRAMMED]))]
    assert line.written[-1] == dart.Frame(0x50, dart.ACK, 0)
    assert link.online(1)
    assert link.poll(1) == []                       # EOT
    assert line.written[-1].kind == dart.POLL


def test_repeated_txn_is_acked_and_dropped() -> None:
    link, line = make_link(scripted(status_frame(4), status_frame(4)))
    assert link.poll(1) == [(dart.DC1, b"\x01")]
    assert link.poll(1) == []
    assert line.written[-1] == dart.Frame(0x50, dart.ACK, 4)


def test_lost_ack_makes_pump_resend_which_is_dropped() -> None:
    sim = SimPump(1)
    lose_acks = [True]

    def peer(frame: dart.Frame) -> bytes | None:
        if frame.kind == dart.ACK and lose_acks:
            lose_acks.clear()
            return None                            # the ACK never reached the pump
        return sim.handle(frame)
    link, line = make_link(peer)
    lose_acks.clear()
    assert link.poll(1)                            # TX# 0
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    lose_acks.append(True)
    assert link.poll(1)                            # TX# 1, our ACK lost
    assert link.poll(1) == []                      # the pump resends TX# 1: ACKed and dropped
    assert line.written[-1] == dart.Frame(0x50, dart.ACK, 1)
    assert link.poll(1) == []                      # now acknowledged: EOT


def test_out_of_sequence_txn_is_naked() -> None:
    link, line = make_link(scripted(status_frame(3), status_frame(7)))
    assert link.poll(1)
    assert link.poll(1) == []
    assert line.written[-1] == dart.Frame(0x50, dart.NAK, 7)
    assert link.rx_last(1) == 3


def test_txn_zero_means_pump_restarted() -> None:
    link, _ = make_link(scripted(status_frame(5), status_frame(0, dart.ST_NOT_PROGRAMMED)))
    link.poll(1)
    assert link.poll(1) == [(dart.DC1, bytes([dart.ST_NOT_PROGRAMMED]))]
    assert link.rx_last(1) == 0


@pytest.mark.parametrize("after_f", [0, 1])
def test_txn_wraps_f_to_0_and_f_to_1(after_f: int) -> None:
    link, line = make_link(scripted(status_frame(0xE), status_frame(0xF), status_frame(after_f, 4)))
    assert link.poll(1) and link.poll(1)
    assert link.poll(1) == [(dart.DC1, b"\x04")]
    assert line.written[-1] == dart.Frame(0x50, dart.ACK, after_f)


def test_pump_resets_its_txn_after_three_naks() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle)
    link.poll(1)                                   # accepted TX# 0
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    assert link.poll(1) and link.rx_last(1) == 1
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    with sim.lock:
        sim.tx = 5                                 # out of sequence: we expect 1
    for _ in range(3):
        assert link.poll(1) == []
        assert line.written[-1] == dart.Frame(0x50, dart.NAK, 5)
    got = link.poll(1)                             # the pump resent with TX# 0: a restart, accepted
    assert (dart.DC1, bytes([dart.ST_NOT_PROGRAMMED])) in got
    assert line.written[-1] == dart.Frame(0x50, dart.ACK, 0)


def test_garbled_reply_is_not_acked_and_comes_again() -> None:
    sim = SimPump(1)
    sim.faults.corrupt_crc = 1
    link, line = make_link(sim.handle)
    with pytest.raises(PumpTimeout) as exc:
        link.poll(1)
    assert exc.value.context["garbled"] is True
    assert all(f.kind == dart.POLL for f in line.written)   # no ACK, no NAK for a bad CRC
    assert link.poll(1) == [(dart.DC1, bytes([dart.ST_NOT_PROGRAMMED]))]


def test_dropped_bytes_are_survived() -> None:
    sim = SimPump(1)
    sim.faults.drop_bytes = 3
    link, _ = make_link(sim.handle)
    with pytest.raises(PumpTimeout):
        link.poll(1)
    assert link.poll(1) == [(dart.DC1, bytes([dart.ST_NOT_PROGRAMMED]))]


def test_offline_after_n_missed_polls_and_back() -> None:
    sim = SimPump(1)
    link, _ = make_link(sim.handle, offline_after=3, offline_time=0.0)
    link.poll(1)
    sim.faults.mute = 4
    for missed in range(1, 5):
        with pytest.raises(PumpTimeout):
            link.poll(1)
        assert link.online(1) == (missed < 3)
    assert link.poll(1) == []
    assert link.online(1)


def test_a_short_stall_does_not_take_the_pump_offline() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle, offline_after=3, offline_time=1.0)
    link.poll(1)
    sim.faults.mute = 1000
    missed = 0
    while line.now < 0.9:                          # many missed polls, but less than offline_time of silence
        with pytest.raises(PumpTimeout):
            link.poll(1)
        missed += 1
        assert link.online(1)
    assert missed > 3
    while line.now < 1.1:
        with pytest.raises(PumpTimeout):
            link.poll(1)
    assert not link.online(1)


class StalledLine(FakeLine):
    """The answer arrives at once, but the master's thread gets the CPU back only after its reply window."""

    stalls = 0

    def read(self, size: int = 1) -> bytes:
        if self.stalls:
            self.stalls -= 1
            self.now += 0.2                        # descheduled: the window closed meanwhile
            return b""
        return super().read(size)


def test_an_answer_that_came_in_the_window_counts_when_read_late() -> None:
    sim = SimPump(1)
    line = StalledLine(sim.handle)
    link = DartLink(line, reply_timeout=0.05, clock=line.clock)  # type: ignore[arg-type]
    line.stalls = 1
    assert link.poll(1) == [(dart.DC1, bytes([dart.ST_NOT_PROGRAMMED]))]
    assert link.online(1)
    line.stalls = 1
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])   # its ACK read late: no resend
    assert [f.txn for f in line.data_frames()] == [0]


def test_a_frame_after_an_unacknowledged_one_restarts_at_txn_zero() -> None:
    """The pump took a frame but every ACK of it was lost: the next frame under the next TX# would be
    NAKed, under the same TX# dropped as a retry. TX# 0 gets it through, once."""
    sim = SimPump(1)
    deaf: list[bool] = []

    def peer(frame: dart.Frame) -> bytes | None:
        reply = sim.handle(frame)
        return None if deaf and frame.kind == dart.DATA else reply
    link, line = make_link(peer, retries=2)
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    deaf.append(True)
    with pytest.raises(PumpTimeout):
        link.send(1, [(dart.CD1, bytes([dart.CMD_RESET]))])
    deaf.clear()
    link.send(1, [(dart.CD5, dart.bcd_encode(1659, 3))])
    assert [f.txn for f in line.data_frames()] == [0, 1, 1, 1, 0]
    assert sim.received == [(dart.CD1, bytes([dart.CMD_STATUS])), (dart.CD1, bytes([dart.CMD_RESET])),
                            (dart.CD5, dart.bcd_encode(1659, 3))]
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    assert line.data_frames()[-1].txn == 1         # acknowledged again: counting resumes


def test_other_addresses_are_ignored() -> None:
    link, _ = make_link(scripted(status_frame(1, addr=0x51) + status_frame(2, addr=0x50)))
    assert link.poll(1) == [(dart.DC1, b"\x01")]
    assert link.rx_last(1) == 2


# -- data: master -> pump ----------------------------------------------------------------------------
def test_first_frame_carries_txn_zero_then_counts_up_and_wraps_to_one() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle)
    for _ in range(17):
        link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    assert [f.txn for f in line.data_frames()] == [0, *range(1, 16), 1]
    assert len(sim.received) == 17


def test_nak_retry_keeps_txn() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle)
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    sim.faults.nak = 2
    link.send(1, [(dart.CD5, dart.bcd_encode(1659, 3))])
    sent = [raw for raw in line.raw_written if raw[1] & 0xF0 == dart.DATA][1:]
    assert len(sent) == 3 and len(set(sent)) == 1 and sent[0][1] == 0x31
    assert sim.received.count((dart.CD5, dart.bcd_encode(1659, 3))) == 1
    assert link.tx(1) == 2


def test_txn_reset_after_three_naks() -> None:
    sim = SimPump(1)
    link, line = make_link(sim.handle)
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    sim.faults.nak = 3
    link.send(1, [(dart.CD5, dart.bcd_encode(1659, 3))])
    assert [f.txn for f in line.data_frames()] == [0, 1, 2, 2, 2, 0]
    assert link.tx(1) == 1
    assert sim.received[-1] == (dart.CD5, dart.bcd_encode(1659, 3))


def test_naks_after_reset_raise_link_error() -> None:
    def peer(frame: dart.Frame) -> bytes | None:
        return dart.encode_short(frame.addr, dart.NAK, frame.txn) if frame.kind == dart.DATA else None
    link, line = make_link(peer)
    with pytest.raises(PumpLinkError):
        link.send(1, [(dart.CD1, b"\x00")])
    assert len(line.data_frames()) == 6


def test_lost_ack_retry_is_a_duplicate_for_the_pump() -> None:
    sim = SimPump(1)
    first: list[bool] = []

    def peer(frame: dart.Frame) -> bytes | None:
        reply = sim.handle(frame)
        if frame.kind == dart.DATA and first:
            first.clear()
            return None                            # pump applied it, its ACK got lost
        return reply
    link, line = make_link(peer)
    link.send(1, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    first.append(True)
    link.send(1, [(dart.CD5, dart.bcd_encode(1659, 3))])
    assert [f.txn for f in line.data_frames()] == [0, 1, 1]
    assert sim.received == [(dart.CD1, b"\x00"), (dart.CD5, dart.bcd_encode(1659, 3))]


def test_silent_pump_times_out_after_retries() -> None:
    link, line = make_link(lambda frame: None, retries=2)
    with pytest.raises(PumpTimeout) as exc:
        link.send(3, [(dart.CD1, b"\x00")])
    assert exc.value.context["pump"] == 3
    assert len(line.data_frames()) == 3 and len({f.txn for f in line.data_frames()}) == 1


# -- transport errors ----------------------------------------------------------------------------------
class BrokenPort(FakeLine):
    def __init__(self, fail: str) -> None:
        super().__init__(lambda frame: None)
        self.fail = fail

    def write(self, data: bytes) -> int:
        if self.fail == "write":
            raise serial.SerialException("device reports readiness to read but returned no data")
        return len(data)

    def read(self, size: int = 1) -> bytes:
        raise OSError(5, "Input/output error")


@pytest.mark.parametrize("fail", ["write", "read"])
def test_serial_errors_become_link_errors(fail: str) -> None:
    port = BrokenPort(fail)
    link = DartLink(port, clock=port.clock)
    with pytest.raises(PumpLinkError):
        link.poll(1)


# -- over the device line: the simulator's pty, or a bench line ------------------------------------------
@pytest.fixture
def port(pump_line: PumpLine) -> Iterator[serial.Serial]:
    """The line opened 8O1 at 9600 baud, as DartController opens it."""
    with serial.serial_for_url(pump_line.url, baudrate=9600, bytesize=8, parity=serial.PARITY_ODD,
                               stopbits=1, timeout=0.01) as opened:
        yield opened


def _read_for(port: serial.Serial, seconds: float, want: int = 1 << 16) -> bytes:
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(out) < want:
        out += port.read(256)
    return out


def _poll_until(link: DartLink, pump: int, wanted: int, tries: int = 20) -> list[tuple[int, bytes]]:
    """Poll until the pump reports transaction `wanted`; what it reported."""
    seen: list[tuple[int, bytes]] = []
    for _ in range(tries):
        seen += link.poll(pump)
        if any(code == wanted for code, _ in seen):
            return seen
    raise AssertionError(f"no transaction {wanted} in {tries} polls")


def test_device_answers_a_status_request(port: serial.Serial, pump_line: PumpLine) -> None:
    link = DartLink(port, reply_timeout=0.2)
    p = pump_line.pump
    link.poll(p)                                   # whatever it had pending (EOT or data), ACKed
    assert link.online(p)
    link.send(p, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    assert link.tx(p) == 1                         # our first frame carried TX# 0 and was ACKed
    status = [data for code, data in _poll_until(link, p, dart.DC1) if code == dart.DC1]
    assert status[-1][0] in (dart.ST_NOT_PROGRAMMED, dart.ST_RESET, dart.ST_AUTHORIZED, dart.ST_FILLING,
                             dart.ST_FILLING_COMPLETED, dart.ST_MAX_REACHED, dart.ST_SWITCHED_OFF)


def test_device_acks_every_txn_through_the_wrap(port: serial.Serial, pump_line: PumpLine) -> None:
    link = DartLink(port, reply_timeout=0.2)
    p = pump_line.pump
    for _ in range(17):                            # TX# 0, 1..15, then 1 again
        link.send(p, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    assert link.tx(p) == 2
    _poll_until(link, p, dart.DC1)


def test_device_is_silent_on_crc_error(port: serial.Serial, pump_line: PumpLine) -> None:
    addr = dart.pump_address(pump_line.pump)
    good = dart.encode_data(addr, 0, [(dart.CD1, bytes([dart.CMD_STATUS]))])
    bad = bytearray(good)
    bad[4] ^= 0x01
    port.reset_input_buffer()
    port.write(bytes(bad))
    assert _read_for(port, 0.15) == b""
    port.write(good)
    assert _read_for(port, 2.0, want=3) == dart.encode_short(addr, dart.ACK, 0)
    if pump_line.simulator is not None:
        assert pump_line.simulator.bad_frames == 1


def test_simulated_line_ignores_other_addresses(port: serial.Serial, pump_line: PumpLine,
                                                simulator: DartLineSimulator) -> None:
    absent = min(set(range(1, 33)) - set(pump_line.pumps))
    port.write(dart.encode_short(dart.pump_address(absent), dart.POLL))   # no pump of that number here
    assert _read_for(port, 0.1) == b""


# -- hostile line (issue 10): a babbling line must not hold the poll loop ------------------------------
class BabblingLine(FakeLine):
    """A line that delivers a noise byte every 5 ms besides what the peer answers; after 10 s of fake time
    it raises, so a link that never gives up fails the test instead of hanging it."""

    def read(self, size: int = 1) -> bytes:
        if self.now > 10.0:
            raise AssertionError("the link kept reading a babbling line for 10 s")
        if not self.rx:
            self.now += 0.005
            return b"\x00"
        return super().read(size)


def test_babbling_line_cannot_stretch_the_reply_window() -> None:
    sim = SimPump(2)
    line = BabblingLine(sim.handle)
    link = DartLink(line, reply_timeout=0.05, offline_after=3, offline_time=0.0,  # type: ignore[arg-type]
                    clock=line.clock)
    link.poll(2)
    assert link.online(2)
    sim.faults.mute = 1000                         # switched off: never answers again
    for missed in range(1, 4):
        start = line.now
        with pytest.raises(PumpTimeout):
            link.poll(2)
        assert line.now - start <= link.reply_limit + 0.01    # the deadline is absolute
        assert link.online(2) == (missed < 3)      # noise is no answer: the pump goes offline


def test_babbling_line_bounds_a_data_frame_send() -> None:
    line = BabblingLine(lambda frame: None)
    link = DartLink(line, reply_timeout=0.05, retries=3, clock=line.clock)  # type: ignore[arg-type]
    with pytest.raises(PumpTimeout):
        link.send(2, [(dart.CD1, bytes([dart.CMD_STOP]))])
    assert line.now <= link.max_operation_time + 0.01
