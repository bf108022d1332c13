"""Fuzz targets for text and files a terminal reads: track 2 and the stripe reader's lines, the terminal
configuration (TOML), journal rows read back, the panel and PIN pad line protocols, the TCP line splitter,
device URLs, decline reasons and the ISO 8583 fuel lines."""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import socket
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from contracts.errors import CardError, ConfigError, JournalError, MessageError, PinPadError, SyncError
from contracts.reasons import DeclineReason, parse_reason
from contracts.track2 import Track2, parse_track2
from fuzz.harness import Target, Violation

__all__ = ["TARGETS"]

TODAY = dt.date(2025, 6, 15)
_TMP = Path(tempfile.mkdtemp(prefix="forecourt-fuzz-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_STATE: dict[str, Any] = {}


def track2(data: bytes) -> None:
    """A swipe line as the stripe reader gets it; a parsed track survives its own raw form."""
    from drivers.msr.reader import TcpMagstripeReader
    from firmware.programs.bank import magstripe

    reader = _STATE.get("msr")
    if reader is None:
        reader = _STATE["msr"] = TcpMagstripeReader("127.0.0.1", 9)    # never started: no connection
    reader._on_line(data)
    if reader._swipes.empty():
        return
    track: Track2 = parse_track2(reader._swipes.get_nowait())
    if parse_track2(track.raw) != track or parse_track2(f";{track.raw}?") != track:
        raise Violation("parse_track2(track.raw) != track")
    magstripe.sells_goods(track.service_code)
    magstripe.expired(track, TODAY)
    magstripe.entry_mode_for_swipe(track, chip_tried_and_failed=True)


def config_toml(data: bytes) -> None:
    """The terminal configuration file, any bytes in it: ConfigError naming the key, or a config."""
    from firmware.config import load_config

    path = _TMP / "terminal.toml"
    path.write_bytes(data)
    load_config(path, profile="sim")


_COLUMNS = ("state", "pump", "program", "preset_kind", "preset_value", "nozzles", "data", "adjuncts",
            "totals_before", "reason", "flags", "volume_cl", "created_at", "events.detail")


def journal_rows(data: bytes) -> None:
    """A sale row read back after one column was changed on disk: JournalError or a record."""
    from firmware.sale.journal import Journal

    journal = _STATE.get("journal")
    if journal is None:
        journal = _STATE["journal"] = Journal(_TMP / "journal.db")
        _STATE["db"] = sqlite3.connect(str(_TMP / "journal.db"), isolation_level=None)
    db: sqlite3.Connection = _STATE["db"]
    db.execute("DELETE FROM sales")
    db.execute("DELETE FROM events")
    journal.begin_sale("s1", 1, "476173******0010", "tok", program="fleet")
    if not data:
        return
    column = _COLUMNS[data[0] % len(_COLUMNS)]
    raw = data[1:]
    value: Any = raw if data[0] & 0x80 else raw.decode("utf-8", "replace")
    table, _, name = column.rpartition(".")
    db.execute(f"UPDATE {table or 'sales'} SET {name} = ?", (value,))
    journal.get("s1")
    journal.all_sales()
    journal.events("s1")


def panel_line(data: bytes) -> None:
    """Panel -> terminal lines ({"key": ...}); only keys of the panel's set reach the terminal."""
    from drivers.panel import KEYS

    panel = _panel()
    for line in data.split(b"\n"):
        panel._on_line(line)
    while not panel._keys.empty():
        if panel._keys.get_nowait() not in KEYS:
            raise Violation("a key outside KEYS reached the terminal")


def _panel() -> Any:
    from drivers.panel.socket import SocketPanel

    panel = _STATE.get("panel")
    if panel is None:
        panel = _STATE["panel"] = SocketPanel("127.0.0.1", 9)     # discard port: no panel answers
        panel.close()
    return panel


def panel_server_line(data: bytes) -> None:
    """The simulator's end of the panel line: terminal -> panel screens, each read back as a View."""
    from hostsim.panel_server import PanelServer

    server = _STATE.get("panel_server")
    if server is None:
        server = _STATE["panel_server"] = PanelServer()       # listens, never started: no thread
    server.screens.clear()
    for line in data.split(b"\n"):
        server._on_line(line)
    for doc in list(server.screens):
        server.view(doc)
    try:
        server.wait_for("no such screen", 0)
    except TimeoutError:
        pass


def pinpad_line(data: bytes) -> None:
    """Keys from the panel line into PIN entry: a 16-byte block of 4-12 digits, or PinPadError."""
    from drivers.pinpad.pinpad import PinPad

    panel = _panel()
    panel.flush_keys()
    for line in data.split(b"\n"):
        panel._on_line(line)
    panel._on_line(b'{"key": "CANCEL"}')          # the cardholder gives up at the end
    block = PinPad(panel, bytes(16)).read_offline_pin(timeout=5)
    if len(block) != 8 or block[0] >> 4 != 2 or not 4 <= block[0] & 0xF <= 12:
        raise Violation("offline PIN block is not ISO 9564 format 2")


class _Keys:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def read_key(self, timeout: float) -> str | None:
        return self.keys.pop(0) if self.keys else "CANCEL"


def pinpad_keys(data: bytes) -> None:
    """Any text a key source hands over (KeySource.read_key -> str): digits of another script, several
    characters, a control character. The PIN pad accepts ASCII digits only, else PinPadError."""
    from drivers.pinpad.pinpad import PinPad

    keys = data.decode("utf-8", "replace").split("\n")
    block = PinPad(_Keys(keys), bytes(16)).read_offline_pin(timeout=5)
    if len(block) != 8:
        raise Violation("offline PIN block is not 8 bytes")


def line_splitter(data: bytes) -> None:
    """drivers.line_client.recv_lines over a real socket pair: the lines are the input's lines."""
    from drivers.line_client import recv_lines

    a, b = socket.socketpair()
    try:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        got = list(recv_lines(b, bufsize=7))
    finally:
        a.close()
        b.close()
    if got != data.split(b"\n")[:-1]:
        raise Violation("recv_lines lost or changed a line")


def device_url(data: bytes) -> None:
    from drivers.url import parse_url

    parse_url(data.decode("utf-8", "replace"))


def reason(data: bytes) -> None:
    if not isinstance(parse_reason(data.decode("utf-8", "replace")), DeclineReason):
        raise Violation("parse_reason returned no DeclineReason")


def fuel_lines(data: bytes) -> None:
    from firmware.acquirer.messages import parse_fuel

    text = data.decode("latin-1")
    lines = parse_fuel(text)
    if "".join(line.encode() for line in lines) != text:
        raise Violation("encode(parse_fuel(x)) != x")


def timestamp(data: bytes) -> None:
    """contracts.messages.parse_timestamp: a naive UTC datetime that prints back to itself, or ValueError."""
    from contracts.messages import parse_timestamp

    when = parse_timestamp(data.decode("utf-8", "replace"))
    if parse_timestamp(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) != when:
        raise Violation("timestamp does not survive its own text")


def card_context(data: bytes) -> None:
    """The bank sale's card context as read back from the store-and-forward file: SyncError when damaged."""
    from firmware.programs.bank.advice import CardContext

    context = CardContext.loads(data)
    if CardContext.loads(context.dumps()) != context:
        raise Violation("loads(dumps(context)) != context")


def registry_sale_id(data: bytes) -> None:
    """The registry's look at a payload that is no valid SALE, to answer its sender: a sale_id or None."""
    from registry.server import _sale_id

    sale_id = _sale_id(data)
    if sale_id is not None and not isinstance(sale_id, str):
        raise Violation("sale_id is not text")


_UUID = b"0f8fad5b-d9cb-469f-a165-70867728950e"
_CONTEXT = (b'{"pan": "4761739001010010", "expiry": "3012", "entry_mode": "051", "pan_sequence": "01", '
            b'"pump": 1, "requested": 5000, "stan": "000042", "transmission": "0615120000", "icc": "9F2701", '
            b'"approved": 5000, "rrn": "000000000001", "auth_code": "ABC123"}')
_CONFIG = (b'[terminal]\nid = "T-0001"\nstation = "ST-001"\nprograms = ["fleet"]\n[mqtt]\nport = 1883\n'
           b'[devices]\npumps = [1, 2]\n[timeouts]\nauth = 5\n')

TARGETS = [
    Target("track2", track2, (CardError,),
           lambda: [b";4761739001010010=30121011234567890?", b"5413330089020011D2512201"]),
    Target("config_toml", config_toml, (ConfigError,), lambda: [_CONFIG], max_len=2048),
    Target("journal_rows", journal_rows, (JournalError,),
           lambda: [b"\x05[1,2]", b"\x08{\"1\": [10, 20]}", b"\x00completed", b"\x09card_expired"],
           max_len=512),
    Target("panel_line", panel_line, (), lambda: [b'{"key": "5"}\n{"key": "ENTER"}\n[1]\n{"key": 5}']),
    Target("panel_server_line", panel_server_line, (),
           lambda: [b'{"screen": "idle", "lines": ["Welcome"]}\n{"screen": "pin", "view": {}}']),
    Target("pinpad_line", pinpad_line, (PinPadError,),
           lambda: [b'{"key": "1"}\n{"key": "2"}\n{"key": "3"}\n{"key": "4"}\n{"key": "ENTER"}']),
    Target("pinpad_keys", pinpad_keys, (PinPadError,),
           lambda: [b"1\n2\n3\n4\nENTER", b"1\nCLEAR\n5\n6\n7\n8\nENTER"]),
    Target("line_splitter", line_splitter, (), lambda: [b"abc\ndef\n\nxyz"], max_len=1024),
    Target("device_url", device_url, (ConfigError,),
           lambda: [b"pcsc://Virtual PCD 00 00", b"tcp://127.0.0.1:5000"]),
    Target("reason", reason, (), lambda: [b"card_expired", b"expired_card"]),
    Target("fuel_lines", fuel_lines, (MessageError,),
           lambda: [b"001L000012345000000002159", b"001L000012345000001799000000002221"]),
    Target("timestamp", timestamp, (ValueError,),
           lambda: [b"2024-02-29T23:59:59.5Z", b"2025-06-15T12:00:00Z"]),
    Target("card_context", card_context, (SyncError,), lambda: [_CONTEXT]),
    Target("registry_sale_id", registry_sale_id, (), lambda: [b'{"v":1,"sale_id":"' + _UUID + b'"}']),
]
