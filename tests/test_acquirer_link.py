"""AcquirerLink against a real TCP server on loopback: framing, matching, timeouts, failures, reconnects."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import HostUnavailable, MessageError
from drivers.acquirer import AcquirerLink
from drivers.acquirer.tcp import response_mti
from firmware.acquirer import messages as m
from hostsim.acquirer_host import AcquirerHost

Handler = Callable[[socket.socket, bytes, int], None]  # (connection, request, connection number)


def request(stan: int, mti: str = "0100") -> bytes:
    return m.encode({"t": mti, "11": f"{stan:06d}", "4": "000000001000"})


def answer(raw: bytes, code: str = "00") -> bytes:
    doc = m.decode(raw)
    body = m.encode({"t": response_mti(doc["t"]), "11": doc["11"], "39": code})
    return len(body).to_bytes(2, "big") + body


def recv_frame(conn: socket.socket) -> bytes | None:
    def exact(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    head = exact(2)
    return None if head is None else exact(int.from_bytes(head, "big"))


class Server:
    """Accepts connections; calls handler for every frame received; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received: list[bytes] = []
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, daemon=True)
        self._accept.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            while (frame := recv_frame(conn)) is not None:
                self.received.append(frame)
                self.handler(conn, frame, number)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing alone does not)
        except OSError:
            pass
        self.sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._accept.join(2)
        for t in self._threads:
            t.join(2)


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def link_to(server: Server, **kw: float) -> AcquirerLink:
    return AcquirerLink("127.0.0.1", server.port, connect_timeout=kw.get("connect_timeout", 2.0),
                        response_timeout=kw.get("response_timeout", 2.0))


def test_exchange_matches_mti_and_stan_and_drops_stale_frames(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, raw: bytes, _: int) -> None:
        conn.sendall(answer(request(999)))  # a stale answer to some other request comes first
        conn.sendall(answer(raw))

    server = serve(handler)
    with link_to(server) as link:
        for stan in (1, 2):
            got = m.decode(link.exchange(request(stan)))
            assert (got["t"], got["11"]) == ("0110", f"{stan:06d}")
        advice = m.decode(link.exchange(request(3, "0221")))
        assert advice["t"] == "0230"
    assert server.connections == 1 and len(server.received) == 3


def test_timeout_then_late_answer_is_dropped(serve: Callable[[Handler], Server]) -> None:
    pending: list[bytes] = []

    def handler(conn: socket.socket, raw: bytes, _: int) -> None:
        if not pending:  # the first request: no answer now
            pending.append(raw)
            return
        conn.sendall(answer(pending[0]) + answer(raw))  # late answer, then the real one

    server = serve(handler)
    with link_to(server) as link:
        start = time.monotonic()
        with pytest.raises(HostUnavailable):
            link.exchange(request(1), timeout=0.3)
        assert 0.25 < time.monotonic() - start < 1.5
        assert m.decode(link.exchange(request(2), timeout=2))["11"] == "000002"


def test_partial_frame_at_timeout_stays_in_step(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, raw: bytes, _: int) -> None:
        frame = answer(raw)
        conn.sendall(frame[:5])
        time.sleep(0.4)
        conn.sendall(frame[5:])

    server = serve(handler)
    with link_to(server) as link:
        with pytest.raises(HostUnavailable):
            link.exchange(request(1), timeout=0.2)
        time.sleep(0.3)
        with pytest.raises(HostUnavailable):  # the rest of answer 1 arrives and is dropped; 2 never comes
            link.exchange(request(2), timeout=0.2)
        assert link.connected


def test_connection_refused() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    link = AcquirerLink("127.0.0.1", port, connect_timeout=1.0, response_timeout=1.0)
    with pytest.raises(HostUnavailable) as err:
        link.exchange(request(1))
    assert err.value.context["reason"] == "ConnectionRefusedError"
    assert not link.connected


def test_drop_then_reconnect(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, raw: bytes, number: int) -> None:
        if number == 1:
            conn.shutdown(socket.SHUT_RDWR)
            return
        conn.sendall(answer(raw))

    server = serve(handler)
    with link_to(server) as link:
        with pytest.raises(HostUnavailable):
            link.exchange(request(1))
        assert not link.connected
        assert m.decode(link.exchange(request(2)))["11"] == "000002"
    assert server.connections == 2


def test_idle_drop_reconnects_before_sending() -> None:
    first = AcquirerHost({}).start()
    port = first.port
    try:
        link = AcquirerLink("127.0.0.1", port, connect_timeout=2.0, response_timeout=2.0)
        assert m.decode(link.exchange(request(1)))["11"] == "000001"   # answered (format error: no matter)
    finally:
        first.stop()                                  # closes the idle connection
    second = AcquirerHost({}, port=port).start()      # the acquirer came back on the same port
    try:
        assert m.decode(link.exchange(request(2)))["11"] == "000002"
        assert [d["stan"] for d in second.decisions] == ["000002"]
    finally:
        link.close()
        second.stop()


def test_oversize_frame(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, raw: bytes, number: int) -> None:
        conn.sendall(b"\xff\xff" + bytes(100) if number == 1 else answer(raw))

    server = serve(handler)
    with link_to(server) as link:
        with pytest.raises(MessageError) as err:
            link.exchange(request(1))
        assert err.value.context["length"] == 0xFFFF and not link.connected
        assert m.decode(link.exchange(request(2)))["11"] == "000002"  # reconnected


def test_short_frame(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, raw: bytes, number: int) -> None:
        if number == 1:
            conn.sendall(b"\x00\x64" + bytes(10))  # announces 100 bytes, sends 10, hangs up
            conn.shutdown(socket.SHUT_RDWR)
        elif number == 2:
            conn.sendall(b"\x00\x03abc")  # below the smallest message
        else:
            conn.sendall(answer(raw))

    server = serve(handler)
    with link_to(server) as link:
        with pytest.raises(MessageError, match="cut short"):
            link.exchange(request(1))
        with pytest.raises(MessageError, match="length out of range"):
            link.exchange(request(2))
        assert m.decode(link.exchange(request(3)))["11"] == "000003"


def test_garbage_frame_is_message_error(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda conn, raw, n: conn.sendall(b"\x00\x10" + b"X" * 16))
    with link_to(server) as link, pytest.raises(MessageError):
        link.exchange(request(1))


def test_oversize_request_is_refused_before_sending(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda conn, raw, n: None)
    link = AcquirerLink("127.0.0.1", server.port, connect_timeout=1, response_timeout=1, max_frame=64)
    fuel = "".join(m.FuelLine("001", 1000, 1000, 100).encode() for _ in range(4))
    with pytest.raises(MessageError):
        link.exchange(m.encode({"t": "0100", "11": "000001", "63": fuel}))
    assert server.connections == 0
    link.close()


def test_network_echo_answered_and_unknown_response_fields_ignored(
        serve: Callable[[Handler], Server]) -> None:
    """Defects: an 0800 from the acquirer went unanswered, and a 0110 with fields the terminal does not use
    (44, a private 62 and 63) was rejected whole."""
    got: list[bytes] = []

    def handler(conn: socket.socket, raw: bytes, number: int) -> None:
        if raw[:4] == b"0810":
            got.append(raw)
            doc = {"t": "0110", "11": "000001", "39": "00", "4": "000000001000", "38": "A1B2C3",
                   "44": "AVS", "62": "PRIVATE", "63": "NOT FUEL"}
            body = bytes(iso8583.encode(doc, m.DIALECT.full_spec())[0])
            conn.sendall(len(body).to_bytes(2, "big") + body)
            return
        echo = bytes(iso8583.encode({"t": "0800", "7": "1201120000", "11": "000777", "70": "301"},
                                    m.DIALECT.full_spec())[0])
        conn.sendall(len(echo).to_bytes(2, "big") + echo)

    server = serve(handler)
    with link_to(server) as link:
        result = m.parse_preauth_response(link.exchange(request(1)))
    assert result.approved and result.auth_code == "A1B2C3"
    reply = m.decode(got[0])
    assert (reply["t"], reply["11"], reply["39"], reply["70"]) == ("0810", "000777", "00", "301")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_reading_mti_and_stan_from_any_bytes_only_raises_message_error(data: bytes) -> None:
    from drivers.acquirer.tcp import _key

    try:
        mti, stan = _key(data, m.DIALECT)
    except MessageError:
        return
    assert mti.isdigit() and len(mti) == 4 and (stan == "" or (stan.isdigit() and len(stan) == 6))
