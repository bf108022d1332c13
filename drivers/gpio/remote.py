"""The host simulator's GPIO header over TCP (`tcp://127.0.0.1:PORT`), and the line protocol both ends speak.

The simulator runs the terminal in a separate process, so its simulated header (hostsim.gpio_server) is a
TCP server on loopback. One ASCII line per message, newline-terminated (docs/gpio.md):

    terminal -> header   IN <n> UP|DOWN     claim input n with that pull; answered by LEVEL <n> <0|1>
                         OUT <n> 0|1        set output n's electrical level
                         PING               answered by PONG once every earlier line is handled
    header -> terminal   HELLO gpio 1       on connect, then LEVEL for every input the simulator drove
                         LEVEL <n> 0|1      an input's electrical level, on every edge, in order
                         ERR <reason>       a line was refused (the connection stays up)

After a reconnect the client sends IN and OUT for every pin it holds; a level that changed meanwhile
reaches the callbacks then.

>>> parse_line(b"LEVEL 17 1")
Message(verb='LEVEL', number=17, flag=True)
>>> format_line(Message("IN", 4, True))
b'IN 4 UP\\n'
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import deque
from typing import Any, NamedTuple

from contracts.errors import ConfigError, MessageError
from drivers.gpio.pins import Claims, Debouncer, GpioError, SoftInput, check_bounce, check_number
from drivers.line_client import LineClient
from drivers.url import DeviceUrl

__all__ = ["MAX_LINE", "Message", "RemoteOutput", "RemotePins", "format_line", "open_remote_pins",
           "parse_line"]

_log = logging.getLogger(__name__)

MAX_LINE = 64
_FLAGS = {"IN": {"UP": True, "DOWN": False}, "OUT": {"1": True, "0": False}, "LEVEL": {"1": True, "0": False}}
_BARE = ("PING", "PONG")


class Message(NamedTuple):
    verb: str               # IN, OUT, LEVEL, PING, PONG, HELLO, ERR
    number: int = 0         # the GPIO number of IN, OUT, LEVEL
    flag: bool = False      # IN: pull-up; OUT and LEVEL: the electrical level


def parse_line(line: bytes) -> Message:
    """One line, without its newline; MessageError saying what is wrong (never echoing the line)."""
    if len(line) > MAX_LINE:
        raise MessageError("GPIO line too long", size=len(line))
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MessageError("GPIO line is not ASCII") from None
    words = text.split()
    if not words:
        raise MessageError("empty GPIO line")
    verb = words[0]
    if verb in _BARE and len(words) == 1:
        return Message(verb)
    if verb in ("HELLO", "ERR"):
        return Message(verb)
    flags = _FLAGS.get(verb)
    if flags is None:
        raise MessageError("unknown GPIO verb")
    if len(words) != 3 or not (words[1].isascii() and words[1].isdigit()) or words[2] not in flags:
        raise MessageError(f"GPIO {verb} needs a number and one of {'/'.join(flags)}")
    try:
        number = check_number(int(words[1]))
    except ConfigError:
        raise MessageError("GPIO number out of range") from None
    return Message(verb, number, flags[words[2]])


def format_line(message: Message) -> bytes:
    if message.verb in _BARE:
        return f"{message.verb}\n".encode("ascii")
    flags = _FLAGS[message.verb]
    word = next(name for name, value in flags.items() if value == message.flag)
    return f"{message.verb} {message.number} {word}\n".encode("ascii")


class RemoteOutput:
    def __init__(self, pins: RemotePins, number: int, *, initial: bool, active_low: bool) -> None:
        self.number = number
        self.initial = initial
        self.active_low = active_low
        self._pins = pins
        self._value = initial
        self.closed = False

    def write(self, value: bool) -> None:
        if self.closed:
            raise ConfigError(f"GPIO{self.number} was released", number=self.number)
        self._value = bool(value)
        self._pins._send(Message("OUT", self.number, self.electrical()))

    def read(self) -> bool:
        return self._value

    def electrical(self) -> bool:
        return self._value != self.active_low


class RemotePins:
    """A PinFactory on the host simulator's GPIO header; `timeout` bounds each wait for the header."""

    def __init__(self, host: str, port: int, *, key: str = "gpio", timeout: float = 5.0) -> None:
        self.key = key
        self.timeout = timeout
        self.errors: deque[str] = deque(maxlen=100)   # the last ERR reasons the header sent back
        self._claims = Claims(key)
        self._lock = threading.Lock()
        self._inputs: dict[int, SoftInput] = {}
        self._pulls: dict[int, bool] = {}
        self._outputs: dict[int, RemoteOutput] = {}
        self._waiting: dict[int, threading.Event] = {}
        self._pongs = threading.Condition(self._lock)
        self._pong_count = 0
        self._connected = threading.Event()
        self._debouncer = Debouncer("gpio-remote-debounce")
        self._client = LineClient(host, port, self._on_line, name="gpio-remote", max_line=MAX_LINE,
                                  on_connect=self._on_connect, log=_log)

    def start(self) -> RemotePins:
        """Connect; GpioError when the header does not answer within timeout."""
        self._client.start()
        if not self._connected.wait(self.timeout):
            self._client.close()
            raise GpioError("the simulated GPIO header does not answer", key=self.key,
                            host=self._client.host, port=self._client.port)
        return self

    def input(self, number: int, *, pull_up: bool = True, active_low: bool = False,
              bounce_ms: int = 0) -> SoftInput:
        check_bounce(bounce_ms, key=self.key)
        self._claims.claim(number)
        pin = SoftInput(number, level=pull_up, active_low=active_low, bounce_ms=bounce_ms,
                        debouncer=self._debouncer)
        got = threading.Event()
        with self._lock:
            self._inputs[number], self._pulls[number], self._waiting[number] = pin, pull_up, got
        self._send(Message("IN", number, pull_up))
        if not got.wait(self.timeout):
            with self._lock:
                del self._inputs[number], self._pulls[number]
                self._waiting.pop(number, None)
            self._claims.release(number)
            raise GpioError(f"the simulated GPIO header did not report GPIO{number}", key=self.key,
                            number=number)
        return pin

    def output(self, number: int, *, initial: bool = False, active_low: bool = False) -> RemoteOutput:
        self._claims.claim(number)
        pin = RemoteOutput(self, number, initial=bool(initial), active_low=active_low)
        with self._lock:
            self._outputs[number] = pin
        self._send(Message("OUT", number, pin.electrical()))
        return pin

    def sync(self, timeout: float | None = None) -> None:
        """Wait until the header has handled every line sent so far; GpioError after timeout."""
        with self._lock:
            target = self._pong_count + 1
        self._send(Message("PING"))
        with self._pongs:
            if not self._pongs.wait_for(lambda: self._pong_count >= target, timeout or self.timeout):
                raise GpioError("the simulated GPIO header did not answer PING", key=self.key)

    def close(self) -> None:
        with self._lock:
            outputs, self._outputs = list(self._outputs.values()), {}
            inputs, self._inputs = list(self._inputs.values()), {}
        for out in outputs:
            self._send(Message("OUT", out.number, out.initial != out.active_low))
            out.closed = True
            self._claims.release(out.number)
        for pin in inputs:
            pin.close()
            self._claims.release(pin.number)
        self._debouncer.stop()
        if outputs and self._client.connected:
            try:        # the safe levels are handled before the socket closes (unread input would reset it)
                self.sync(min(self.timeout, 1.0))
            except GpioError:
                pass
        self._client.close()

    def _send(self, message: Message) -> None:
        self._client.send(format_line(message))

    def _on_connect(self) -> None:
        with self._lock:
            claims = [Message("IN", n, self._pulls[n]) for n in self._inputs]
            claims += [Message("OUT", n, out.electrical()) for n, out in self._outputs.items()]
        self._client.send(b"".join(format_line(m) for m in claims))
        self._connected.set()

    def _on_line(self, line: bytes) -> None:
        try:
            message = parse_line(line)
        except MessageError as exc:      # the header's bug: logged, the link stays up
            _log.warning("gpio: unreadable line from the header", extra={"error": str(exc)})
            return
        if message.verb == "LEVEL":
            with self._lock:
                pin = self._inputs.get(message.number)
                first = self._waiting.pop(message.number, None)
            if pin is None:
                return
            if first is not None:
                pin.preset(message.flag)
                first.set()
            else:
                pin.feed(message.flag)
        elif message.verb == "PONG":
            with self._pongs:
                self._pong_count += 1
                self._pongs.notify_all()
        elif message.verb == "ERR":
            reason = line.decode("ascii", "replace")[4:]
            self.errors.append(reason)
            _log.warning("gpio: the header refused a line", extra={"reason": reason})


def open_remote_pins(url: DeviceUrl, **options: Any) -> RemotePins:
    """`tcp://HOST:PORT[?timeout=SECONDS]`: the host simulator's GPIO header."""
    if options:
        raise ConfigError(f"tcp:// GPIO takes no options (got {', '.join(sorted(options))})", key=url.key)
    host, port = url.address()
    try:                                   # the simulator's header only: never a pin level off the network
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError("tcp:// GPIO is the host simulator's header: a loopback address only", key=url.key)
    timeout = url.number("timeout", 5.0)
    if not 0 < timeout <= 600:
        raise ConfigError("URL option timeout must be 0..600 seconds", key=url.key, option="timeout")
    return RemotePins(host, port, key=url.key, timeout=timeout).start()
