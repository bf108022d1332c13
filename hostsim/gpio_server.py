"""The simulated GPIO header on loopback TCP that the terminal process reaches at tcp://127.0.0.1:PORT.

The simulator drives inputs (`drive`, `pulses`) and reads outputs (`level`, `on_output`); the terminal's
drivers.gpio.remote client speaks the line protocol described there and in docs/gpio.md. One terminal at a
time: a new connection replaces the old one (the terminal restarted). Input levels live here, so a
restarted terminal is told the current ones (HELLO, then LEVEL for every driven input, then the answers to
its IN lines). A malformed line is answered with ERR and recorded in `errors`; the connection stays up.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Self

from contracts.errors import ConfigError, MessageError
from drivers.gpio.pins import check_number
from drivers.gpio.remote import MAX_LINE, Message, format_line, parse_line
from drivers.gpio.sim import pulse_train
from drivers.line_client import recv_lines, shut
from hostsim.line_server import close_listener

__all__ = ["GpioServer"]

OutputListener = Callable[[int, bool], None]


class GpioServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self.errors: list[MessageError] = []        # why lines were refused (never the line itself)
        self._lock = threading.RLock()              # state and sends: LEVEL lines leave in drive order
        self._cond = threading.Condition(self._lock)
        self._driven: dict[int, bool] = {}          # inputs' electrical levels set by drive()
        self._pulls: dict[int, bool] = {}           # the pull each claimed input asked for
        self._outputs: dict[int, bool] = {}         # outputs' electrical levels
        self._listeners: list[OutputListener] = []
        self._conn: socket.socket | None = None
        self.connections = 0                        # connections accepted so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="gpio-server", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        close_listener(self._srv)
        self.drop()
        self._thread.join(timeout=2)

    def drop(self) -> None:
        """Close the terminal's connection (a cable glitch, a restart); input levels are kept."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            shut(conn)

    def wait_connected(self, timeout: float, *, count: int = 1) -> None:
        """Wait until `count` connections were accepted and one is up; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.connections >= count and self._conn is not None,
                                       timeout=timeout):
                raise TimeoutError(f"GPIO client not connected within {timeout}s")

    # the simulated world's side
    def drive(self, number: int, level: bool) -> None:
        """Set input `number` to electrical `level`; the terminal gets a LEVEL line."""
        check_number(number)
        with self._lock:
            self._driven[number] = bool(level)
            self._send(format_line(Message("LEVEL", number, bool(level))))

    def pulses(self, number: int, count: int, hz: float) -> None:
        """Drive `count` high-then-low pulses on input `number` at `hz`; returns when done."""
        check_number(number)
        pulse_train(lambda level: self.drive(number, level), count, hz)

    def input_level(self, number: int) -> bool:
        """An input's electrical level: as driven, else its pull (high when never claimed)."""
        with self._lock:
            return self._driven.get(number, self._pulls.get(number, True))

    def level(self, number: int, default: bool | None = None) -> bool:
        """An output's electrical level; `default`, or ConfigError, while the terminal never set it."""
        with self._lock:
            if number in self._outputs:
                return self._outputs[number]
        if default is None:
            raise ConfigError(f"GPIO{number} is not an output (yet)", number=number)
        return default

    def on_output(self, callback: OutputListener) -> None:
        """Call callback(number, electrical level) on each output change, on the connection's thread."""
        with self._lock:
            self._listeners.append(callback)

    def wait_output(self, number: int, level: bool, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._outputs.get(number) == level, timeout=timeout):
                raise TimeoutError(f"GPIO{number} did not go {'high' if level else 'low'} within {timeout}s")

    # the connection
    def _send(self, data: bytes) -> None:
        """Send to the terminal, if one is connected (caller holds the lock); a failed send drops it."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.sendall(data)
        except OSError:
            self._conn = None
            shut(conn)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # a client that stops reading is dropped after 5 s, not waited for forever (recv stays blocking)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
            self.drop()
            with self._cond:
                self._conn = conn
                self.connections += 1
                hello = [b"HELLO gpio 1\n"] + [format_line(Message("LEVEL", n, v))
                                                for n, v in sorted(self._driven.items())]
                self._send(b"".join(hello))
                self._cond.notify_all()
            threading.Thread(target=self._read, args=(conn,), name="gpio-conn", daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            for line in recv_lines(conn, 4096, max_line=MAX_LINE, on_drop=self._overlong):
                self._handle(line)
        except OSError:
            pass
        finally:
            with self._cond:
                if self._conn is conn:
                    self._conn = None
            conn.close()

    def _overlong(self, size: int) -> None:
        self._refuse(MessageError("GPIO line too long", size=size))

    def _refuse(self, exc: MessageError) -> None:
        with self._lock:
            self.errors.append(exc)
            self._send(f"ERR {exc}\n".encode("ascii", "replace"))

    def _handle(self, line: bytes) -> None:
        try:
            message = parse_line(line)
            if message.verb not in ("IN", "OUT", "PING"):
                raise MessageError("a GPIO client sends IN, OUT or PING")
        except MessageError as exc:
            self._refuse(exc)
            return
        listeners: list[OutputListener] = []
        with self._cond:
            if message.verb == "PING":
                self._send(b"PONG\n")
            elif message.verb == "IN":
                self._pulls[message.number] = message.flag
                self._outputs.pop(message.number, None)
                level = self._driven.get(message.number, message.flag)
                self._send(format_line(Message("LEVEL", message.number, level)))
            else:
                if self._outputs.get(message.number) != message.flag:
                    listeners = list(self._listeners)
                self._outputs[message.number] = message.flag
                self._cond.notify_all()
        for listener in listeners:
            listener(message.number, message.flag)
