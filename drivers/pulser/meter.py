"""A pulser dispenser's controller core: pulse meter, two-stage valve (or motor) relays, nozzle switch,
preset, electronic totals. Pure: time comes in as milliseconds, pulses as counts, outputs go out as levels.

The same code runs on the terminal (pins on its own GPIO) and on a pump node under MicroPython, so: no
dataclasses, enum, typing, __future__ imports or f-strings.

Units: volume in centilitres, money in cents, unit price in thousandths per litre, the K-factor in pulses
per 1000 litres (k_milli: 100 pulses/L is 100000). A filling's volume is floor(pulses / K); its amount is
rounded half up, as a DART pump's (drivers/pump/simulator.py amount_for).

States follow the DART numbering (Wayne DART application protocol, DC1): 1 idle (reset), 2 authorized,
4 filling, 5 filling completed, 6 preset (max) reached. A filling ends when the nozzle is hung up, the
preset is reached, or the terminal stops it; it is final only once the meter has been still for
settle_ms after the valve closed, so late pulses of a closing valve still belong to it.

>>> m = PulserCore(k_milli=100000)
>>> m.authorize(1659, volume_cl=200)
True
>>> m.nozzle(True, 0); m.state, m.outputs()
(4, (True, True))
>>> m.pulses(150, 100); m.outputs()           # 50 cl before the preset: the fast stage closes
(False, True)
>>> m.pulses(50, 200); m.outputs(), m.tick(600), m.state, m.volume_cl(), m.amount_cents()
((False, False), None, 6, 200, 332)
"""

IDLE, AUTHORIZED, FILLING, COMPLETED, MAX_REACHED = 1, 2, 4, 5, 6
FINISHED = (COMPLETED, MAX_REACHED)
BY_VOLUME, BY_AMOUNT = 0, 1
SETTLE_MS = 300              # the meter still this long after the valve closed: the filling is final
SNAPSHOT_VERSION = 1

__all__ = ["AUTHORIZED", "BY_AMOUNT", "BY_VOLUME", "COMPLETED", "FILLING", "FINISHED", "IDLE",
           "MAX_REACHED", "PulserCore", "amount_for"]


def amount_for(volume_cl, price_milli):  # type: (int, int) -> int
    """Cents for a volume at a unit price, rounded half up."""
    return (volume_cl * price_milli + 500) // 1000


def _pulses_for(volume_cl, k_milli):  # type: (int, int) -> int
    """The fewest pulses whose volume reaches volume_cl."""
    return -((-volume_cl * k_milli) // 100000)


class PulserCore:
    def __init__(self, k_milli=0, slow_cl=50, settle_ms=SETTLE_MS):  # type: (int, int, int) -> None
        self.k_milli = k_milli            # 0: not calibrated yet, no filling is allowed
        self.slow_cl = slow_cl            # the last slow_cl of a preset run through the slow stage only
        self.settle_ms = settle_ms
        self.state = IDLE
        self.number = 0                   # filling number, grows with every authorization (16 bits)
        self.nozzle_out = False
        self.suspended = False
        self.price = 0
        self.cap = 0                      # pulses at which the preset is reached; 0: no preset
        self.count = 0                    # pulses of the current or last filling
        self.total_cl = 0                 # electronic totals of finished fillings
        self.total_cents = 0
        self.total_pulses = 0             # every pulse the meter ever gave, stray ones included
        self.stray = 0                    # pulses while no filling was open (a leak, a creeping meter)
        self.fill_k = 0                   # the K-factor the current or last filling runs at (a new K from the
                                          # terminal never re-figures a filling already counted)
        self._fast = self._slow = False
        self._closed_at = -1              # ms when the valve closed on an open filling; -1: not closing
        self._ending = FILLING
        self.changed = True               # set on every change of what a snapshot holds

    # -- figures --------------------------------------------------------------------------------------
    def volume_cl(self):  # type: () -> int
        return self.count * 100000 // self.fill_k if self.fill_k else 0

    def amount_cents(self):  # type: () -> int
        return amount_for(self.volume_cl(), self.price)

    def totals(self):  # type: () -> tuple[int, int]
        """(volume_cl, amount_cents) of every filling, the open one included."""
        if self.state in (FILLING, AUTHORIZED):
            return self.total_cl + self.volume_cl(), self.total_cents + self.amount_cents()
        return self.total_cl, self.total_cents

    def outputs(self):  # type: () -> tuple[bool, bool]
        """(fast stage, slow stage): drive the relays to these levels after every call."""
        return self._fast, self._slow

    # -- commands from the terminal -----------------------------------------------------------------------
    def configure(self, k_milli, slow_cl):  # type: (int, int) -> bool
        if self.state not in (IDLE, COMPLETED, MAX_REACHED):
            return False
        if not 1000 <= k_milli <= 100000000 or not 0 <= slow_cl <= 10000:
            return False
        if (k_milli, slow_cl) != (self.k_milli, self.slow_cl):
            self.k_milli, self.slow_cl, self.changed = k_milli, slow_cl, True
        return True

    def authorize(self, price_milli, volume_cl=0, amount_cents=0):  # type: (int, int, int) -> bool
        """Open a filling (after a finished one is reset); False when busy or not calibrated."""
        if self.state in FINISHED:
            self.reset()
        if self.state != IDLE or not self.k_milli or price_milli <= 0 or volume_cl < 0 or amount_cents < 0:
            return False
        k = self.k_milli
        # the most pulses whose volume does not pass the preset: floor(p / K) <= volume_cl
        cap = ((volume_cl + 1) * k - 1) // 100000 if volume_cl else 0
        if amount_cents:
            # the most pulses whose volume's amount does not exceed the preset (rounded half up): a
            # volume cap_cl, then the most pulses p with floor(p / K) <= cap_cl
            cap_cl = ((amount_cents + 1) * 1000 - 501) // price_milli
            by_amount = ((cap_cl + 1) * k - 1) // 100000 if cap_cl >= 0 else 0
            cap = min(cap, by_amount) if cap else by_amount
        if (volume_cl or amount_cents) and cap <= 0:
            return False
        self.cap, self.fill_k = cap, k
        self.price, self.count, self.suspended = price_milli, 0, False
        self.number = (self.number + 1) & 0xFFFF
        self.state, self.changed = AUTHORIZED, True     # a nozzle out already must be hung up and lifted
        return True

    def stop(self, now_ms):  # type: (int) -> None
        if self.state == AUTHORIZED:
            self._finish(COMPLETED)
        elif self.state == FILLING:
            self._close(now_ms, COMPLETED)

    def suspend(self):  # type: () -> None
        if self.state == FILLING and self._closed_at < 0:
            self.suspended, self._fast, self._slow, self.changed = True, False, False, True

    def resume(self):  # type: () -> None
        if self.state == FILLING and self.suspended and self.nozzle_out and self._closed_at < 0:
            self.suspended, self.changed = False, True
            self._open()

    def reset(self):  # type: () -> bool
        """Close a finished filling (its figures stay readable until the next one); False while busy."""
        if self.state in (AUTHORIZED, FILLING):
            return False
        if self.state != IDLE:
            self.state, self.changed = IDLE, True
        return True

    # -- the dispenser's inputs ---------------------------------------------------------------------------
    def nozzle(self, out, now_ms):  # type: (bool, int) -> None
        if out == self.nozzle_out:
            return
        self.nozzle_out, self.changed = out, True
        if out and self.state == AUTHORIZED:
            self.state = FILLING
            self._open()
        elif not out and self.state == FILLING:
            self._close(now_ms, COMPLETED)

    def pulses(self, n, now_ms):  # type: (int, int) -> None
        """n more pulses from the meter."""
        if n <= 0:
            return
        self.total_pulses += n
        self.changed = True
        if self.state != FILLING:         # no filling open: counted apart, never sold
            self.stray += n
            return
        self.count += n
        if self._closed_at >= 0:
            self._closed_at = now_ms      # still flowing: the settle time starts again
            return
        if self.cap and self.count >= self.cap:
            self._close(now_ms, MAX_REACHED)
        elif self.cap and self.count >= self.cap - _pulses_for(self.slow_cl, self.fill_k):
            self._fast = False

    def tick(self, now_ms):  # type: (int) -> None
        """Call often: a closed valve's filling becomes final once the meter has settled."""
        if self._closed_at >= 0 and now_ms - self._closed_at >= self.settle_ms:
            self._finish(self._ending)

    # -- persistence (a restart keeps totals and settles an interrupted filling) ---------------------------
    def snapshot(self):  # type: () -> dict[str, int]
        self.changed = False
        return {"v": SNAPSHOT_VERSION, "k": self.k_milli, "slow": self.slow_cl, "state": self.state,
                "number": self.number, "price": self.price, "cap": self.cap, "count": self.count,
                "total_cl": self.total_cl, "total_cents": self.total_cents, "pulses": self.total_pulses,
                "stray": self.stray, "fill_k": self.fill_k}

    def restore(self, snap):  # type: (dict[str, int]) -> None
        """After a restart: an authorization lapses, an interrupted filling ends with what was counted."""
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError("unknown snapshot version")
        self.k_milli, self.slow_cl = int(snap["k"]), int(snap["slow"])
        self.number, self.price, self.cap = int(snap["number"]), int(snap["price"]), int(snap["cap"])
        self.count, self.total_cl, self.total_cents = int(snap["count"]), int(snap["total_cl"]), \
            int(snap["total_cents"])
        self.total_pulses, self.stray = int(snap["pulses"]), int(snap["stray"])
        self.fill_k = int(snap.get("fill_k", self.k_milli))
        state = int(snap["state"])
        self.state = FILLING if state in (AUTHORIZED, FILLING) else state
        if self.state == FILLING:
            self._finish(COMPLETED)
        self._fast = self._slow = False
        self.changed = True

    # -- inside -------------------------------------------------------------------------------------------
    def _open(self):  # type: () -> None
        near = self.cap and self.count >= self.cap - _pulses_for(self.slow_cl, self.fill_k)
        self._fast, self._slow = not near, True
        self._closed_at = -1

    def _close(self, now_ms, ending):  # type: (int, int) -> None
        self._fast = self._slow = False
        self._closed_at, self._ending, self.changed = now_ms, ending, True

    def _finish(self, ending):  # type: (int) -> None
        self._fast = self._slow = False
        self._closed_at = -1
        self.total_cl += self.volume_cl()
        self.total_cents += self.amount_cents()
        self.state, self.suspended, self.changed = ending, False, True
