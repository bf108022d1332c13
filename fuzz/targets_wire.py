"""Fuzz targets for the line and network formats: DART frames and the link, ISO 8583, MQTT, ESC/POS."""

from __future__ import annotations

import json
import socket
import threading
import warnings
from typing import Any

from contracts import iso8583, messages
from contracts import iso8583_spec as spec
from contracts.errors import HostError, MessageError, PumpError
from drivers.pump import dart
from drivers.pump.decode import decode_hex
from drivers.pump.link import DartLink
from firmware.acquirer import messages as acq
from fuzz.harness import Target, Violation

__all__ = ["TARGETS"]

A = dart.ADDR_FIRST


def _dart_seeds() -> list[bytes]:
    return [dart.encode_short(A, dart.POLL), dart.encode_short(A + 3, dart.ACK, 5),
            dart.encode_short(A, dart.EOT, 1), dart.encode_data(A, 1, [(dart.CD1, b"\x06")]),
            dart.encode_data(A, 2, [(dart.DC1, b"\x04"), (dart.DC3, bytes.fromhex("001234") + b"\x11")]),
            dart.encode_data(A, 3, [(dart.DC2, bytes.fromhex("00000150000002fa"))]),   # escaped SF
            dart.encode_data(A + 1, 0xF, [(dart.CD3, dart.bcd_encode(2000, 4))])]


def dart_decode(data: bytes) -> None:
    """One wire frame: decode, then the encoder must give back the very bytes (DART line protocol)."""
    frame = dart.decode(data)
    if dart.encode_frame(frame) != data:
        raise Violation("encode(decode(x)) != x")


def dart_resync(data: bytes) -> None:
    frame = dart.decode_resync(data)
    if not dart.ADDR_FIRST <= frame.addr <= dart.ADDR_LAST:
        raise Violation("resync returned a frame with a bad address")


def dart_splitter(data: bytes) -> None:
    """The stream deframer: frames do not depend on how the line cut the bytes, each ends in SF."""
    step = (data[0] % 7 + 1) if data else 1
    whole, cut = dart.FrameSplitter(), dart.FrameSplitter()
    frames = whole.feed(data)
    pieces = [f for i in range(0, len(data), step) for f in cut.feed(data[i:i + step])]
    if frames != pieces:
        raise Violation("frames depend on the read size")
    for raw in frames:
        if raw[-1] != dart.SF or not dart.ADDR_FIRST <= raw[0] <= dart.ADDR_LAST:
            raise Violation("splitter yielded a frame without address or stop flag")
        try:
            dart.decode_resync(raw)
        except dart.DartError:
            pass


def dart_capture(data: bytes) -> None:
    """`forecourt pump decode`: hex text in, JSON-able dicts out (DecodeInputError for bad text)."""
    for text in (data.hex(" "), data.decode("latin-1")):
        json.dumps(decode_hex(text))


class _Line:
    """A pyserial-shaped port whose far end answers every write with the fuzzed bytes; reads advance a
    fake clock, so a reply window costs no wall time."""

    def __init__(self, answers: bytes) -> None:
        self.timeout: float | None = 0.01
        self.now = 0.0
        self.rx = bytearray()
        self.answers = answers

    def clock(self) -> float:
        return self.now

    def write(self, data: bytes) -> int:
        self.rx.extend(self.answers)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self.now += 0.002
        out, self.rx = bytes(self.rx[:size]), self.rx[size:]
        return out

    def reset_input_buffer(self) -> None:
        self.rx.clear()


def dart_link(data: bytes) -> None:
    """The master link reading a hostile pump: poll and send end in transactions or a PumpError."""
    line = _Line(data)
    link = DartLink(line, clock=line.clock, retries=1)
    for trans, payload in link.poll(1):
        if not 0 <= trans <= 0xFF or len(payload) > 0xFF:
            raise Violation("poll returned an impossible transaction")
    link.send(1, [(dart.CD1, b"\x00")])


def dart_sim_pump(data: bytes) -> None:
    """The pump simulator answering whatever frames a master sends: silence or well-formed frames."""
    from drivers.pump.simulator import SimPump

    pump = SimPump(1)
    for raw in dart.FrameSplitter().feed(data):
        try:
            frame = dart.decode(raw)
        except dart.DartError:
            continue
        if frame.addr != A:
            continue
        reply = pump.handle(frame)
        for wire in dart.FrameSplitter().feed(reply or b""):
            dart.decode(wire)


def _acq_seeds() -> list[bytes]:
    icc = "910A" + "11" * 10 + "8A023030" + "7107" + "9F180400000001"
    return [iso8583.encode({"t": "0110", "11": "000042", "39": "00", "4": "000000005000",
                            "37": "000000000001", "38": "ABC123", "55": icc}),
            iso8583.encode({"t": "0110", "11": "000043", "39": "10", "4": "000000005000",
                            "54": "0002978C000000002000"}),
            iso8583.encode({"t": "0230", "11": "000044", "39": "00"}),
            iso8583.encode({"t": "0430", "11": "000045", "39": "05"})]


def iso8583_decode(data: bytes) -> None:
    """Any dialect (the first byte picks it): decode and re-encode; an 0800 gets an 0810 that decodes."""
    dialects = list(spec.DIALECTS.values())
    dialect = dialects[data[0] % len(dialects)] if data else spec.DIALECT
    raw = data[1:]
    try:
        answer = iso8583.network_response(raw, dialect)
    except MessageError:
        answer = None
    if answer is not None and iso8583.decode(answer, dialect)["t"] != "0810":
        raise Violation("network_response answered with another MTI")
    doc = iso8583.decode(raw, dialect)
    if _fields(iso8583.decode(iso8583.encode(doc, dialect), dialect)) != _fields(doc):
        raise Violation("decode(encode(doc)) != doc")


def _fields(doc: dict[str, str]) -> dict[str, str]:
    """The fields without the bitmaps: encode() derives those (an all-zero secondary bitmap is dropped)."""
    return {k: v for k, v in doc.items() if k not in ("p", "1")}


def _iso_seeds() -> list[bytes]:
    echo = iso8583.encode({"t": "0800", "7": "0615120000", "11": "000007", "70": "301"})
    return [b"\x00" + raw for raw in [*_acq_seeds(), echo]]


def acquirer_responses(data: bytes) -> None:
    """The terminal's readers of the host's 0110, 0230 and 0430 (firmware.acquirer.messages)."""
    result = acq.parse_preauth_response(data)
    if result.approved and result.approved_amount <= 0:
        raise Violation("approval without a positive amount")
    for parse in (acq.parse_completion_response, acq.parse_reversal_response):
        try:
            parse(data)
        except MessageError:
            pass


_HOST: Any = None


def acquirer_host(data: bytes) -> None:
    """The simulated acquirer's request handler: one request in, an answer or None; it must not raise."""
    global _HOST
    if _HOST is None:
        from hostsim.acquirer_host import AcquirerHost
        _HOST = AcquirerHost({"4": bytes(range(16))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # TripleDES deprecation in the host's crypto library
        answer = _HOST.handle(data)
    del _HOST.requests[:], _HOST.advices[:], _HOST.decisions[:]
    if answer is not None and answer != b"drop":
        iso8583.decode(answer)


def _host_seeds() -> list[bytes]:
    return [iso8583.encode({"t": "0100", "2": "4761739001010010", "3": "000000", "4": "000000005000",
                            "11": "000001", "14": "3012", "22": "051", "41": "T0000001"}),
            iso8583.encode({"t": "0220", "11": "000002", "4": "000000001000"}),
            iso8583.encode({"t": "0420", "11": "000003", "39": "17"})]


class _Acquirer:
    """A loopback TCP acquirer that answers each connection's first frame with the fuzzed bytes, then
    hangs up; the real AcquirerLink deframes whatever came."""

    def __init__(self) -> None:
        self.answer = b""
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, name="fuzz-acquirer", daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.server.accept()
            with conn:
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    while size > 0:
                        size -= len(conn.recv(size) or b"x" * size)
                    conn.sendall(self.answer)
                except OSError:
                    pass


def acquirer_link(data: bytes) -> None:
    """drivers.acquirer.tcp: the response frame is the matching MTI and STAN, else a HostError or
    MessageError."""
    from drivers.acquirer.tcp import AcquirerLink

    global _ACQUIRER
    if _ACQUIRER is None:
        _ACQUIRER = _Acquirer()
    _ACQUIRER.answer = data
    with AcquirerLink("127.0.0.1", _ACQUIRER.port, response_timeout=1.0) as link:
        frame = link.exchange(_REQUEST)
    doc = iso8583.decode(frame)
    if (doc["t"], doc.get("11")) != ("0110", "000001"):
        raise Violation("exchange returned a frame that does not answer the request")


_ACQUIRER: _Acquirer | None = None
_REQUEST = iso8583.encode({"t": "0100", "11": "000001", "4": "000000005000"})


def _link_seeds() -> list[bytes]:
    answer = iso8583.encode({"t": "0110", "11": "000001", "39": "00"})
    late = iso8583.encode({"t": "0110", "11": "000000", "39": "00"})
    return [len(late).to_bytes(2, "big") + late + len(answer).to_bytes(2, "big") + answer]


SCHEMAS = (messages.AUTH_REQUEST, messages.AUTH_RESPONSE, messages.SALE, messages.SALE_ACK,
           messages.TERMINAL_CONFIG)
UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def mqtt_payload(data: bytes) -> None:
    """contracts.messages.decode with the schema the first byte picks; then encode must accept the doc."""
    if not data:
        return
    schema = SCHEMAS[data[0] % len(SCHEMAS)]
    doc = messages.decode(data[1:], schema)
    if messages.decode(messages.encode(doc, schema), schema) != doc:
        raise Violation("decode(encode(doc)) != doc")
    if schema is messages.AUTH_RESPONSE:
        answer = messages.AuthAnswer.from_doc(doc)
        if messages.AuthAnswer.from_doc(answer.to_doc()) != answer:
            raise Violation("AuthAnswer round trip")


def _mqtt_seeds() -> list[bytes]:
    ack = {"sale_id": UUID, "status": "stored", "reason": ""}
    auth = {"request_id": UUID, "approved": False, "reason": "card_expired", "auth_id": None, "allowed_cl": 0,
            "nozzles": [], "card_masked": None}
    cfg = {"terminal": "T1", "station": "S1", "station_name": "Main", "currency": "EUR", "version": 3,
           "prices": [{"pump": 1, "nozzle": 1, "product": "d", "product_name": "Diesel",
                       "price_milli": 1799}]}
    return [bytes([3]) + messages.encode(ack, messages.SALE_ACK),
            bytes([1]) + messages.encode(auth, messages.AUTH_RESPONSE),
            bytes([4]) + messages.encode(cfg, messages.TERMINAL_CONFIG)]


def escpos(data: bytes) -> None:
    from hostsim.escpos_decode import decode_escpos
    decode_escpos(data).text()


def _escpos_seeds() -> list[bytes]:
    return [(b"\x1b@\x1ba\x01SHELL\n\x1ba\x00Diesel  12.00 L\n\x1bE\x01TOTAL 21.59\x1bE\x00\n"
             b"\x1bd\x03\x1dVA\x00"),
            b"\x1bt\x00caf\x82\n\x1d!\x11BIG\n\x1dV\x00"]


TARGETS = [
    Target("dart_decode", dart_decode, (dart.DartError,), _dart_seeds, max_len=600),
    Target("dart_resync", dart_resync, (dart.DartError,), _dart_seeds, max_len=600),
    Target("dart_splitter", dart_splitter, (), lambda: [b"".join(_dart_seeds())]),
    Target("dart_capture", dart_capture, (MessageError,), _dart_seeds, max_len=1024),
    Target("dart_link", dart_link, (PumpError,),
           lambda: [dart.encode_data(A, 1, [(dart.DC1, b"\x02")]), dart.encode_short(A, dart.ACK, 0)],
           max_len=1024),
    Target("dart_sim_pump", dart_sim_pump, (),
           lambda: [dart.encode_short(A, dart.POLL) + dart.encode_data(A, 1, [(dart.CD1, b"\x06")])
                    + dart.encode_data(A, 2, [(dart.CD3, dart.bcd_encode(1000, 4)), (dart.CD2, b"\x01")])
                    + dart.encode_short(A, dart.POLL) + dart.encode_short(A, dart.ACK, 1)]),
    Target("iso8583_decode", iso8583_decode, (MessageError,), _iso_seeds),
    Target("acquirer_responses", acquirer_responses, (MessageError,), _acq_seeds),
    Target("acquirer_host", acquirer_host, (), _host_seeds),
    Target("acquirer_link", acquirer_link, (HostError, MessageError), _link_seeds, max_len=1024),
    Target("mqtt_payload", mqtt_payload, (MessageError,), _mqtt_seeds),
    Target("escpos", escpos, (MessageError,), _escpos_seeds),
]
