"""Front panel over loopback TCP:
drivers.panel.socket.SocketPanel against hostsim.panel_server.PanelServer."""

from __future__ import annotations

import queue
import socket
import time

import pytest

from contracts.errors import ConfigError
from drivers.line_client import LineClient
from drivers.panel import open_panel
from drivers.panel.socket import SocketPanel
from hostsim.panel_server import PanelServer


def connected(server: PanelServer, panel: SocketPanel) -> None:
    panel.show("idle")
    server.wait_for("idle", 5)


def test_screens_arrive_rendered_and_keys_come_back() -> None:
    server = PanelServer().start()
    panel = SocketPanel("127.0.0.1", server.port)
    try:
        connected(server, panel)
        panel.show("enter_pin", stars="***")
        shown = server.wait_for("enter_pin", 5)
        assert shown["lines"] == ["Enter PIN", "PIN: ***", "Press ENTER"]
        assert shown["fields"] == {"stars": "***"}
        view = server.view(shown)
        assert view is not None and view.title == "Enter PIN" and view.figures[0].value == "***"
        server.press("1", "ENTER", "CANCEL")
        assert [panel.read_key(2) for _ in range(3)] == ["1", "ENTER", "CANCEL"]
        assert panel.read_key(0.05) is None
    finally:
        panel.close()
        server.stop()


def test_unknown_keys_and_garbage_lines_are_dropped() -> None:
    server = PanelServer().start()
    panel = SocketPanel("127.0.0.1", server.port)
    try:
        connected(server, panel)
        with server._cond:                       # speak raw to the terminal, as a broken panel would
            conn = server._conn
        assert conn is not None
        conn.sendall(b'not json\n{"key": "F13"}\n[1,2]\n{"key": []}\n{"key": "7"}\n')
        assert panel.read_key(2) == "7"
        assert panel.read_key(0.1) is None
    finally:
        panel.close()
        server.stop()


def test_server_drops_json_lines_that_are_not_objects() -> None:
    server = PanelServer().start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(b'[1]\n"x"\n7\nnull\n{"screen": "idle", "lines": [], "fields": {}}\n')
            server.wait_for("idle", 5)
            assert [s["screen"] for s in server.screens] == ["idle"]
    finally:
        server.stop()


def test_panel_drops_a_line_nested_too_deep_for_json() -> None:
    panel = SocketPanel("127.0.0.1", 9)          # nothing listens: the line is fed directly
    try:
        panel._on_line(b"[" * 100_000 + b"]" * 100_000)    # json raises RecursionError on this
        panel._on_line(b'{"key": "1"}')
        assert panel.read_key(1) == "1"
    finally:
        panel.close()


def test_line_client_survives_callbacks_that_raise() -> None:
    server = PanelServer().start()
    lines: queue.Queue[bytes] = queue.Queue()
    failed: list[str] = []

    def on_line(line: bytes) -> None:
        if "line" not in failed:
            failed.append("line")
            raise ValueError("callback bug")
        lines.put(line)

    def on_connect() -> None:
        if "connect" not in failed:
            failed.append("connect")
            raise RuntimeError("callback bug")

    client = LineClient("127.0.0.1", server.port, on_line, name="test", on_connect=on_connect)
    client.start()
    try:
        server.wait_connected(5)
        server.press("1", "2")
        assert lines.get(timeout=5) == b'{"key": "2"}'
        assert client.connected and failed == ["connect", "line"]
    finally:
        client.close()
        server.stop()


def test_panel_reconnects_and_repeats_the_current_screen() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    panel = SocketPanel("127.0.0.1", port)   # nothing listens yet: the terminal still runs
    try:
        panel.show("offline")
        server = PanelServer(port=port).start()
        try:
            assert server.wait_for("offline", 5)["lines"][0] == "Offline"
        finally:
            server.stop()
        time.sleep(0.3)
        server = PanelServer(port=port).start()  # the simulator restarted: the screen is shown again
        try:
            server.wait_for("offline", 5)
        finally:
            server.stop()
    finally:
        panel.close()


def test_decline_reasons_are_translated_for_the_cardholder() -> None:
    server = PanelServer().start()
    panel = SocketPanel("127.0.0.1", server.port)
    try:
        connected(server, panel)
        panel.show("declined", reason="limit_exhausted")
        assert server.wait_for("declined", 5)["lines"][1] == "Limit exhausted"
    finally:
        panel.close()
        server.stop()


def test_a_screen_without_a_view_or_with_a_broken_one_has_none() -> None:
    server = PanelServer().start()
    try:
        assert server.view({"screen": "idle", "lines": []}) is None
        assert server.view({"screen": "idle", "view": {"screen": 1}}) is None
        assert server.view(None) is None
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["tcp://nohostport", "serial:///dev/ttyS0", "tcp://127.0.0.1:x"])
def test_bad_panel_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_panel(url)


def test_flush_drops_keys_pressed_before_a_prompt() -> None:
    server = PanelServer().start()
    panel = SocketPanel("127.0.0.1", server.port)
    try:
        connected(server, panel)
        server.press("9", "9")
        deadline = time.monotonic() + 2
        while panel._keys.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        panel.flush_keys()
        assert panel.read_key(0.1) is None
        server.press("1")
        assert panel.read_key(2) == "1"
    finally:
        panel.close()
        server.stop()


def test_set_language_renders_the_next_screens_in_it() -> None:
    server = PanelServer().start()
    panel = SocketPanel("127.0.0.1", server.port)
    try:
        connected(server, panel)
        assert panel.languages[:3] == ("en", "de", "fr")
        panel.set_language("de")                     # the card's 5F2D preference, for this sale
        since = len(server.screens)
        panel.show("enter_pin", stars="**")
        assert server.wait_for("enter_pin", 5, since)["lines"] == ["PIN eingeben", "PIN: **",
                                                                   "Mit ENTER bestätigen"]
        panel.show("declined", reason="insufficient_funds")
        assert server.wait_for("declined", 5, since)["lines"][1] == "Keine ausreichende Deckung"
        panel.set_language("FR")
        panel.show("card_removed")
        assert server.wait_for("card_removed", 5, since)["lines"] == ["Carte retirée", "Transaction annulée"]
        panel.set_language("xx")                     # a language the terminal has no texts for
        since = len(server.screens)
        panel.show("idle")
        assert server.wait_for("idle", 5, since)["lines"] == ["Welcome", "Insert card"]
    finally:
        panel.close()
        server.stop()
