"""The pump node inside MicroPython for tests/micropython/run_node.mjs: drivers/pulser/board.py's Board
(with meter.py, wire.py and node.py, all unchanged) on a simulated `machine` module and a simulated meter
that gives pulses while the relays are on and the nozzle is out.

run_node.mjs moves the UART's bytes (as hex) between this harness and a pseudo-terminal and passes the
test's commands (lift, hang, drop, restart) to command(). The node's store is a file in MicroPython's
in-memory filesystem: a restart builds a new Board from the same file, as a power cycle would.
"""

import sys

import board
import wire

PINS = {}


class Pin:
    IN, OUT, PULL_UP, IRQ_RISING = 0, 1, 1, 1

    def __init__(self, ident, mode=0, pull=None, value=None):
        self.ident, self.mode, self.level, self.handler = ident, mode, 1 if pull else 0, None
        if value is not None:
            self.level = value
        PINS[ident] = self

    def value(self, level=None):
        if level is None:
            return self.level
        self.level = level
        return None

    def irq(self, handler=None, trigger=0):
        self.handler = handler


class UART:
    def __init__(self, ident, baudrate=9600, tx=None, rx=None):
        self.rx, self.tx = b"", b""

    def any(self):
        return len(self.rx)

    def read(self):
        data, self.rx = self.rx, b""
        return data or None

    def write(self, data):
        self.tx += data
        return len(data)


class WDT:
    def __init__(self, timeout=0):
        self.timeout, self.fed = timeout, 0

    def feed(self):
        self.fed += 1


class Machine:
    """What board.Board takes from MicroPython's `machine` module."""
    Pin, UART, WDT = Pin, UART, WDT

    @staticmethod
    def disable_irq():
        return 0

    @staticmethod
    def enable_irq(state):
        pass


CONFIG = dict(board.CONFIG)
CONFIG["store"] = "/pulser.json"


class Harness:
    def __init__(self, flow_cl_per_s, slow_ratio, k_milli, now_ms):
        self.flow, self.slow_ratio, self.k_milli = flow_cl_per_s, slow_ratio, k_milli
        self.nozzle_out = False
        self.drop_request, self.drop_reply = {}, {}        # request type -> frames still to lose
        self.noise = b""                                   # line noise sent ahead of the next request
        self.requests = wire.Reader()
        self.replies = wire.Reader()
        self.board = None
        self.boot(now_ms)

    def boot(self, now_ms):
        """Power on: fresh pins, the relays off, the node restored from its file."""
        PINS.clear()
        self.board = board.Board(Machine, CONFIG, now_ms)
        self._set_nozzle()
        self._last, self._carry = now_ms, 0.0
        self.replies = wire.Reader()

    def _set_nozzle(self):
        # the switch pulls the pin low while the nozzle is out (CONFIG nozzle_active_low)
        PINS[CONFIG["nozzle"]].level = 0 if self.nozzle_out else 1

    def _relays(self):
        on = 0 if CONFIG["relay_active_low"] else 1
        return PINS[CONFIG["relay"]].level == on, PINS[CONFIG["slow_relay"]].level == on

    # -- the line --------------------------------------------------------------------------------------
    def feed(self, hexdata, now_ms):
        """Bytes from the terminal (hex) onto the node's UART, less the frames a test asked to lose."""
        self.requests.feed(bytes.fromhex(hexdata))
        uart = self.board.uart
        while True:
            frame = self.requests.next()
            if frame is None:
                break
            seq, kind, payload = frame
            if self.drop_request.get(kind, 0):
                self.drop_request[kind] -= 1
                print(f"dropped request type={kind} seq={seq}")
                continue
            uart.rx += self.noise + wire.encode(seq, kind, payload)
            self.noise = b""
        return self.step(now_ms)

    def step(self, now_ms):
        """Run the meter and the node's main loop up to now; the node's replies out (hex)."""
        b = self.board
        fast, slow = self._relays()
        if self.nozzle_out and (fast or slow):
            rate = self.flow if fast else self.flow * self.slow_ratio             # cl/s
            self._carry += rate * (now_ms - self._last) * self.k_milli / 100000000
        else:
            self._carry = 0.0
        self._last = now_ms
        # the loop turns far faster than the meter pulses: one turn after each pulse
        while self._carry >= 1.0 and any(self._relays()):
            self._carry -= 1.0
            PINS[CONFIG["pulse"]].handler(PINS[CONFIG["pulse"]])
            b.step(now_ms)
        b.step(now_ms)
        out, b.uart.tx = b.uart.tx, b""
        return self._pass_replies(out).hex()

    def _pass_replies(self, data):
        self.replies.feed(data)
        out = b""
        while True:
            frame = self.replies.next()
            if frame is None:
                return out
            seq, kind, payload = frame
            asked = kind & 0x7F
            if kind != wire.NAK and self.drop_reply.get(asked, 0):
                self.drop_reply[asked] -= 1
                print(f"dropped reply type={asked} seq={seq}")
                continue
            out += wire.encode(seq, kind, payload)

    # -- the test's commands ---------------------------------------------------------------------------
    def command(self, line, now_ms):
        words = line.split()
        if not words:
            return
        verb = words[0]
        if verb in ("lift", "hang"):
            self.nozzle_out = verb == "lift"
            self._set_nozzle()
            print(verb + " ok")
        elif verb == "drop":              # drop request|reply <type> [count]
            table = self.drop_request if words[1] == "request" else self.drop_reply
            kind = int(words[2])
            table[kind] = table.get(kind, 0) + (int(words[3]) if len(words) > 3 else 1)
            print("drop ok")
        elif verb == "noise":             # bytes before a SOF, a SOF with a bad length, a bad CRC
            bad = bytearray(wire.encode(1, wire.STATUS, b""))
            bad[-1] ^= 0xFF
            self.noise = b"\x00\x13" + bytes((wire.SOF, 0xFF)) + bytes(bad)
            print("noise ok")
        elif verb == "restart":
            self.boot(now_ms)
            self.report("restarted")
        elif verb == "status":
            self.report("status")
        else:
            print("unknown command " + verb)

    def report(self, what):
        b = self.board
        core = b.node.core
        fast, slow = self._relays()
        print(f"{what} boot={b.node.boot} state={core.state} number={core.number} count={core.count} "
              f"total_cl={core.total_cl} total_cents={core.total_cents} relays={int(fast)}{int(slow)} "
              f"wdt={b.wdt.fed} rx_dropped={b.node.reader.dropped}")


def version():
    return "MicroPython " + ".".join(str(v) for v in sys.implementation.version[:3])
