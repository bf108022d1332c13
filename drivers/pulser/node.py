"""The pump node: a PulserCore behind the UART protocol (wire.py), with its state kept across restarts.

The node answers every good request with one reply and acts on a request once: a repeated SEQ (the
terminal's retry after a lost reply) gets the last reply again. Its snapshot is saved through `store`
(load() -> dict or None, save(dict)) at once on a change of state and at most every save_ms while pulses
come in; a restart restores it, counts one more boot (reported in every status, so the terminal sees the
restart) and ends an interrupted filling with the pulses saved (meter.PulserCore.restore).

Runs unchanged under MicroPython (board.py) and on CPython (the terminal's own GPIO, the simulators).

>>> from drivers.pulser import wire
>>> n = PumpNode(PulserCore(k_milli=100000))
>>> reply = wire.Reader(); reply.feed(n.receive(wire.encode(1, wire.STATUS, b""), 0))
>>> seq, kind, body = reply.next()
>>> seq, kind == wire.STATUS | wire.REPLY, decode_status(body)["state"]
(1, True, 1)
"""

try:
    from drivers.pulser import wire
    from drivers.pulser.meter import PulserCore
except ImportError:          # MicroPython on the board: the modules sit side by side
    import wire  # type: ignore[no-redef,import-not-found]
    from meter import PulserCore  # type: ignore[no-redef,import-not-found]

__all__ = ["STATUS_FIELDS", "PulserCore", "PumpNode", "decode_status", "decode_totals", "status_payload"]

SAVE_MS = 200
GAP_MS = 20                  # a frame's bytes come back to back: after this much quiet a partial one is noise
# status reply: (name, bytes), in order; flags: 1 nozzle out, 2 fast stage, 4 slow stage, 8 suspended,
# 16 not calibrated
STATUS_FIELDS = (("boot", 2), ("state", 1), ("flags", 1), ("number", 2), ("count", 4), ("volume_cl", 4),
                 ("amount_cents", 4), ("price", 4), ("stray", 4))


def status_payload(core, boot):  # type: (PulserCore, int) -> bytes
    fast, slow = core.outputs()
    flags = ((1 if core.nozzle_out else 0) | (2 if fast else 0) | (4 if slow else 0)
             | (8 if core.suspended else 0) | (16 if not core.k_milli else 0))
    values = (boot & 0xFFFF, core.state, flags, core.number, core.count & 0xFFFFFFFF, core.volume_cl(),
              core.amount_cents(), core.price, core.stray & 0xFFFFFFFF)
    out = b""
    for (_, size), value in zip(STATUS_FIELDS, values):
        out += wire.put_u(value, size)
    return out


def decode_status(body):  # type: (bytes) -> dict[str, int]
    out = {}
    at = 0
    for name, size in STATUS_FIELDS:
        out[name] = wire.get_u(body, at, size)
        at += size
    if at != len(body):
        raise wire.WireError("status payload length")
    return out


def decode_totals(body):  # type: (bytes) -> tuple[int, int, int]
    """(volume_cl, amount_cents, pulses) of a TOTALS reply."""
    if len(body) != 24:
        raise wire.WireError("totals payload length")
    return wire.get_u(body, 0, 8), wire.get_u(body, 8, 8), wire.get_u(body, 16, 8)


class PumpNode:
    def __init__(self, core, store=None, save_ms=SAVE_MS):  # type: (PulserCore, object, int) -> None
        self.core, self.store, self.save_ms = core, store, save_ms
        self.boot = 1
        snap = store.load() if store is not None else None  # type: ignore[attr-defined]
        if snap:
            core.restore(snap)
            self.boot = (int(snap.get("boots", 0)) + 1) & 0xFFFF or 1
        self.reader = wire.Reader()
        self._last = None  # type: tuple[int, int, bytes, bytes] | None
        self._rx_at = 0
        self._saved_state = -1
        self._saved_at = 0
        self.save(0)

    def receive(self, data, now_ms):  # type: (bytes, int) -> bytes
        """Bytes from the UART in; the reply frames to send back out."""
        if self.reader.pending() and now_ms - self._rx_at > GAP_MS:
            self.reader.clear()
        self._rx_at = now_ms
        self.reader.feed(data)
        out = b""
        while True:
            frame = self.reader.next()
            if frame is None:
                return out
            seq, kind, payload = frame
            last = self._last
            if last is not None and seq and last[0] == seq and last[1] == kind and last[2] == payload:
                out += last[3]                     # a retry: the same answer, nothing done twice
                continue
            rkind, body = self.handle(kind, payload, now_ms)
            reply = wire.encode(seq, rkind, body)
            self._last = (seq, kind, bytes(payload), reply)
            out += reply

    def handle(self, kind, payload, now_ms):  # type: (int, bytes, int) -> tuple[int, bytes]
        core = self.core
        sizes = {wire.STATUS: 0, wire.AUTHORIZE: 9, wire.STOP: 0, wire.SUSPEND: 0, wire.RESUME: 0,
                 wire.RESET: 0, wire.TOTALS: 0, wire.CONFIG: 6}
        if kind not in sizes:
            return wire.NAK, bytes((wire.NAK_TYPE,))
        if len(payload) != sizes[kind]:
            return wire.NAK, bytes((wire.NAK_LENGTH,))
        done = True
        if kind == wire.AUTHORIZE:
            if not core.k_milli:
                return wire.NAK, bytes((wire.NAK_UNCONFIGURED,))
            price, by, value = wire.get_u(payload, 0, 4), payload[4], wire.get_u(payload, 5, 4)
            done = core.authorize(price, volume_cl=value if by == 0 else 0, amount_cents=value if by else 0)
        elif kind == wire.CONFIG:
            k, slow = wire.get_u(payload, 0, 4), wire.get_u(payload, 4, 2)
            if not 1000 <= k <= 100000000 or slow > 10000:
                return wire.NAK, bytes((wire.NAK_VALUE,))
            done = core.configure(k, slow)
        elif kind == wire.STOP:
            core.stop(now_ms)
        elif kind == wire.SUSPEND:
            core.suspend()
        elif kind == wire.RESUME:
            core.resume()
        elif kind == wire.RESET:
            done = core.reset()
        elif kind == wire.TOTALS:
            cl, cents = core.totals()
            body = wire.put_u(cl, 8) + wire.put_u(cents, 8) + wire.put_u(core.total_pulses, 8)
            return kind | wire.REPLY, body
        if not done:
            return wire.NAK, bytes((wire.NAK_BUSY,))
        self.save(now_ms)
        return kind | wire.REPLY, status_payload(core, self.boot)

    def tick(self, now_ms):  # type: (int) -> None
        self.core.tick(now_ms)
        self.save(now_ms)

    def save(self, now_ms):  # type: (int) -> None
        """Keep the snapshot: now on a change of state, else at most every save_ms while it changes."""
        core = self.core
        if self.store is None or not core.changed:
            return
        if core.state == self._saved_state and now_ms - self._saved_at < self.save_ms:
            return
        snap = core.snapshot()
        snap["boots"] = self.boot
        self.store.save(snap)  # type: ignore[attr-defined]
        self._saved_state, self._saved_at = core.state, now_ms
