"""VirtualCardServer over a real loopback socket, driven by a client speaking vpcd's protocol."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from hostsim.cards import FleetCard
from hostsim.vpcd import CTRL_ATR, CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, VirtualCardServer

PAN = "7083123456789012345"
SELECT = bytes.fromhex("00A4040008F0464F5245464C5400")


class Client:
    """The reader side of the vpcd protocol, as vpcd.c speaks it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(payload)) + payload)

    def recv(self) -> bytes | None:
        header = self._exact(2)
        if header is None:
            return None
        (size,) = struct.unpack(">H", header)
        return self._exact(size) if size else b""

    def _exact(self, size: int) -> bytes | None:
        buf = b""
        while len(buf) < size:
            try:
                chunk = self.sock.recv(size - len(buf))
            except ConnectionResetError:     # closed with our request unread: also "no card"
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def atr(self) -> bytes | None:
        try:
            self.send(bytes([CTRL_ATR]))
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self.recv()

    def close(self) -> None:
        self.sock.close()


class RecordingCard(FleetCard):
    def __init__(self) -> None:
        super().__init__(PAN, "2712", "J DRIVER")
        self.events: list[str] = []

    def power_on(self) -> None:
        self.events.append("on")
        super().power_on()

    def power_off(self) -> None:
        self.events.append("off")

    def reset(self) -> None:
        self.events.append("reset")


class ExplodingCard(FleetCard):
    def __init__(self) -> None:
        super().__init__(PAN, "2712", "J DRIVER")

    def apdu(self, command: bytes) -> bytes:
        raise RuntimeError("simulated firmware crash")

    def reset(self) -> None:
        raise RuntimeError("simulated reset crash")


@pytest.fixture
def server() -> Iterator[VirtualCardServer]:
    with VirtualCardServer() as srv:
        yield srv


def test_listens_on_loopback_free_port(server: VirtualCardServer) -> None:
    assert server.port > 0
    assert server._listener is not None
    assert server._listener.getsockname()[0] == "127.0.0.1"


def test_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError):
        VirtualCardServer(host="0.0.0.0")


def test_atr_power_and_apdu(server: VirtualCardServer) -> None:
    card = RecordingCard()
    server.insert(card)
    client = Client(server.port)
    try:
        assert client.atr() == card.atr
        for code in (CTRL_POWER_ON, CTRL_RESET, CTRL_POWER_OFF):
            client.send(bytes([code]))       # no answer expected: the next answer is the APDU's
        client.send(SELECT)
        answer = client.recv()
        assert answer is not None and answer.endswith(b"\x90\x00") and answer[0] == 0x6F
        assert card.events == ["on", "reset", "off"]
        assert server.apdu_count == 1
        assert server.card is card
    finally:
        client.close()


def test_removal_closes_and_refuses_until_insert(server: VirtualCardServer) -> None:
    server.insert(RecordingCard())
    client = Client(server.port)
    try:
        assert client.atr()
        server.remove()
        assert server.card is None
        assert client.atr() is None          # connection closed
    finally:
        client.close()
    refused = Client(server.port)            # accepted then closed: "no card"
    try:
        assert refused.atr() in (None, b"")
    finally:
        refused.close()
    server.insert(RecordingCard())
    again = Client(server.port)
    try:
        assert again.atr()
    finally:
        again.close()


def test_card_exception_answers_6f00_and_server_survives(server: VirtualCardServer) -> None:
    server.insert(ExplodingCard())
    client = Client(server.port)
    try:
        client.send(bytes([CTRL_RESET]))
        client.send(SELECT)
        assert client.recv() == b"\x6f\x00"
        client.send(SELECT)
        assert client.recv() == b"\x6f\x00"
        assert client.atr()
    finally:
        client.close()


def test_nodelay_set_on_served_connection(server: VirtualCardServer) -> None:
    server.insert(RecordingCard())
    client = Client(server.port)
    try:
        assert client.atr()
        conn = server._conn
        assert conn is not None
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()


def test_stop_closes_listener() -> None:
    srv = VirtualCardServer().start()
    port = srv.port
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
