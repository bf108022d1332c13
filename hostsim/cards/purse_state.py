"""The purse application's memory and rules (docs/chip-wallets.md, docs/chip-wallet-commands.md): pure.

What the card keeps across power cycles is one frozen `Stored` value; a command builds the next value on
the side and swaps it in at its single commit, so a card pulled at any instant leaves either the old state
or the new one, never a mix (the secure element's transaction mechanism). `tear_at` makes the next such
command stop as if power was lost just before or just after its commit. The session (the authenticated
SAM, the terminal's time, the verified PIN) is volatile: power-off and reset forget it. Refusals raise
PurseRefused with the Refusal (its status word) the applet answers.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from contracts import purse_apdu as apdu
from contracts import purse_keys as pk
from contracts import purse_wallets as pw
from contracts.errors import CardError, CardRemoved, ConfigError
from contracts.purse_keys import ADMIN_TYPE, ID_LEN, LOAD_FORMAT, AdminOp, Purpose, mac, verify_mac
from contracts.purse_records import Kind, PurchaseRecord, sign
from contracts.purse_wallets import PIN_TRIES, PendingSlot, Refusal, Status, Wallet, day_of, month_of

__all__ = ["GRACE_SECONDS", "CardTorn", "Cmd", "PurseKeys", "PurseRefused", "PurseState", "SessionContext",
           "Stored", "Tear"]

GRACE_SECONDS = 30 * 60           # another terminal may debit a left reserve in full after this
_U32 = 2**32 - 1
_ADMIN = struct.Struct(">BBB8sIBB")
_LIMITS = struct.Struct(">BII")
_COMPLETION = struct.Struct(">II8s")     # pending counter, final amount, the reserving SAM


class Cmd(enum.StrEnum):
    """The commands that write the card's memory (tear points)."""

    VERIFY = "verify"
    RESERVE = "reserve"
    SETTLE = "settle"
    COMPLETE_PENDING = "complete_pending"
    LOAD = "load"
    APPLY_SCRIPT = "apply_script"


class Tear(enum.StrEnum):
    BEFORE_COMMIT = "before_commit"   # nothing of the command is written
    AFTER_COMMIT = "after_commit"     # all of it is written, no answer leaves the card


class CardTorn(CardRemoved):
    """Power was lost in the middle of a command (a pulled card); committed says whether it was written."""

    def __init__(self, command: Cmd, *, committed: bool) -> None:
        super().__init__("the card lost power mid-command", command=str(command), committed=committed)
        self.committed = committed


class PurseRefused(CardError):
    """The card refuses a command; refusal is the status word it answers (tries: for WRONG_PIN)."""

    def __init__(self, refusal: Refusal, *, tries: int | None = None) -> None:
        super().__init__(f"purse refused: {refusal.name}", refusal=refusal.name)
        self.refusal = refusal
        self.tries = tries

    @property
    def sw(self) -> bytes:
        value = self.refusal | (self.tries or 0) if self.refusal is Refusal.WRONG_PIN else self.refusal
        return value.to_bytes(2, "big")


class PurseKeys:
    """The card's own secrets: its id, its AES keys per purpose and version (derived by the issuer and
    written at personalisation), its PIN. Never shown in a repr."""

    def __init__(self, card_id: bytes, keys: Mapping[tuple[Purpose, int], bytes], pin: str) -> None:
        if len(card_id) != ID_LEN:
            raise ConfigError("a purse id is 8 bytes", length=len(card_id))
        if not (4 <= len(pin) <= 12 and pin.isascii() and pin.isdigit()):
            raise ConfigError("a PIN is 4 to 12 digits")
        for purpose in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN):
            if not any(p is purpose for p, _ in keys):
                raise ConfigError("the card needs a key of each purpose", purpose=purpose.name)
        if any(p is Purpose.SAM or len(k) not in (16, 32) or not 0 < v <= 255 for (p, v), k in keys.items()):
            raise ConfigError("card keys: AES-128/256, purposes AUTH, RECORD, LOAD, ADMIN, versions 1..255")
        self.card_id = bytes(card_id)
        self._keys = dict(keys)
        self._pin = pin.encode("ascii")

    def __repr__(self) -> str:
        return f"PurseKeys(card_id={self.card_id.hex()}, versions={self.versions()})"

    def versions(self) -> pw.KeyVersions:
        v = {p: max(ver for q, ver in self._keys if q is p) for p, _ in self._keys}
        return pw.KeyVersions(v[Purpose.AUTH], v[Purpose.RECORD], v[Purpose.LOAD], v[Purpose.ADMIN])

    def key(self, purpose: Purpose, version: int) -> bytes | None:
        return self._keys.get((purpose, version))

    def current(self, purpose: Purpose) -> tuple[int, bytes]:
        version = max(v for p, v in self._keys if p is purpose)
        return version, self._keys[(purpose, version)]

    def pin_matches(self, pin: str) -> bool:
        return hmac.compare_digest(self._pin, pin.encode("ascii", "replace"))


@dataclass(frozen=True)
class Stored:
    """Everything the card keeps in its non-volatile memory besides its keys."""

    status: Status
    counter: int                      # the last transaction's counter, 0 before the first
    last_time: int
    pin_tries: int
    wallets: tuple[Wallet, ...]
    pending: PendingSlot | None = None
    log: tuple[bytes, ...] = ()       # signed records, newest first, at most apdu.LOG_SIZE

    @classmethod
    def fresh(cls, wallets: tuple[Wallet, ...]) -> Stored:
        if not 0 < len(wallets) <= pw.MAX_WALLETS or [w.number for w in wallets] != list(range(len(wallets))):
            raise ConfigError("wallets are numbered 0..n-1, at most 8", count=len(wallets))
        return cls(Status.ACTIVE, 0, 0, PIN_TRIES, wallets)


@dataclass
class SessionContext:
    """The authenticated session: the SAM's id, the terminal's time, what happened in it."""

    sam_id: bytes
    time: int
    pin_verified: bool = False
    reserved_counter: int | None = None


def _refuse(condition: bool, refusal: Refusal) -> None:
    if condition:
        raise PurseRefused(refusal)


def _left(limit: int, used: int, period: int, now_period: int) -> int:
    if not limit:
        return _U32
    return limit if now_period > period else max(limit - used, 0)


def _count(used: int, period: int, now_period: int, amount: int) -> tuple[int, int]:
    """(used, period) after adding amount to the counter of now_period (a later period restarts it)."""
    if now_period > period:
        return min(amount, _U32), now_period
    if now_period == period:
        return min(used + amount, _U32), period
    return used, period                   # a period already past: nothing to count against


class PurseState:
    """The purse's memory, its session and its rules."""

    def __init__(self, keys: PurseKeys, stored: Stored) -> None:
        self.keys = keys
        self._stored = stored
        self.session: SessionContext | None = None
        self._tears: dict[Cmd, Tear] = {}

    def __repr__(self) -> str:
        return f"PurseState(card_id={self.keys.card_id.hex()}, counter={self._stored.counter})"

    @property
    def stored(self) -> Stored:
        return self._stored

    # -- power, session, tearing ------------------------------------------------------------------------
    def tear_at(self, command: Cmd | str, when: Tear | str) -> None:
        """The next `command` stops as if the card was pulled before or after its commit."""
        self._tears[Cmd(command)] = Tear(when)

    def end_session(self) -> None:
        self.session = None

    def begin_session(self, sam_id: bytes, time: int) -> None:
        """A SAM authenticated itself at the terminal's `time`: an earlier time than the last transaction
        is refused (the card has no clock of its own)."""
        self.session = None
        _refuse(time < self._stored.last_time, Refusal.TIME)
        self.session = SessionContext(sam_id=bytes(sam_id), time=time)

    def _session(self) -> SessionContext:
        if self.session is None:
            raise PurseRefused(Refusal.SECURITY)
        return self.session

    def _commit(self, command: Cmd, new: Stored) -> None:
        tear = self._tears.pop(command, None)
        if tear is Tear.BEFORE_COMMIT:
            self.end_session()
            raise CardTorn(command, committed=False)
        self._stored = new
        if tear is Tear.AFTER_COMMIT:
            self.end_session()
            raise CardTorn(command, committed=True)

    # -- reads ------------------------------------------------------------------------------------------
    def info(self) -> pw.PurseInfo:
        s = self._stored
        return pw.PurseInfo(purse_id=self.keys.card_id, status=s.status, counter=s.counter,
                            keys=self.keys.versions(), last_time=s.last_time, pin_tries=s.pin_tries,
                            wallet_count=len(s.wallets), pending=s.pending)

    def wallet(self, number: int) -> Wallet:
        _refuse(not 0 <= number < len(self._stored.wallets), Refusal.NOT_FOUND)
        return self._stored.wallets[number]

    def log_entry(self, index: int) -> bytes | None:
        """The index-th newest signed record (1 = newest), None past the end."""
        log = self._stored.log
        return log[index - 1] if 0 < index <= len(log) else None

    # -- PIN --------------------------------------------------------------------------------------------
    def verify_pin(self, pin: str) -> None:
        """Offline PIN: the try is counted (committed) before the comparison, reset on a right PIN."""
        session = self._session()
        s = self._stored
        _refuse(s.pin_tries == 0, Refusal.PIN_BLOCKED)
        session.pin_verified = False
        self._commit(Cmd.VERIFY, dataclasses.replace(s, pin_tries=s.pin_tries - 1))
        if not self.keys.pin_matches(pin):
            raise PurseRefused(Refusal.WRONG_PIN, tries=self._stored.pin_tries)
        self._stored = dataclasses.replace(self._stored, pin_tries=PIN_TRIES)
        session.pin_verified = True

    # -- purchase ---------------------------------------------------------------------------------------
    def reserve(self, req: apdu.ReserveRequest) -> apdu.ReserveAnswer:
        session = self._session()
        s = self._stored
        _refuse(not session.pin_verified, Refusal.SECURITY)
        _refuse(s.status is not Status.ACTIVE, Refusal.BLOCKED)
        _refuse(s.pending is not None, Refusal.PENDING)
        _refuse(s.counter >= _U32, Refusal.COUNTER)
        _refuse(req.time < s.last_time or req.time < session.time, Refusal.TIME)
        w = self.wallet(req.wallet)
        _refuse(not w.allows(req.product), Refusal.PRODUCT)
        _refuse(day_of(req.time) > w.expiry, Refusal.EXPIRED)
        _refuse(w.balance == 0, Refusal.BALANCE)
        _refuse(_left(w.day_limit, w.day_used, w.day, day_of(req.time)) == 0, Refusal.DAY_LIMIT)
        _refuse(_left(w.month_limit, w.month_used, w.month, month_of(req.time)) == 0, Refusal.MONTH_LIMIT)
        amount = min(req.max_amount, w.balance, _left(w.day_limit, w.day_used, w.day, day_of(req.time)),
                     _left(w.month_limit, w.month_used, w.month, month_of(req.time)))
        slot = PendingSlot(counter=s.counter + 1, wallet=w.number, product=req.product, reserved=amount,
                           sam_id=session.sam_id, time=req.time, sale_id=req.sale_id)
        self._commit(Cmd.RESERVE, dataclasses.replace(s, pending=slot, counter=slot.counter,
                                                      last_time=max(s.last_time, req.time)))
        session.reserved_counter = slot.counter
        return apdu.ReserveAnswer(reserved=amount, counter=slot.counter)

    def _debit(self, s: Stored, amount: int, kind: Kind, now: int) -> tuple[Stored, bytes]:
        """The state after the pending purchase is debited `amount`, and its signed record."""
        slot = s.pending
        if slot is None:
            raise PurseRefused(Refusal.NO_PENDING)
        _refuse(amount > slot.reserved, Refusal.ABOVE_RESERVE)
        w = s.wallets[slot.wallet]
        _refuse(amount > w.balance, Refusal.BALANCE)       # never: nothing else debits while a slot is open
        day_used, day = _count(w.day_used, w.day, day_of(slot.time), amount)
        month_used, month = _count(w.month_used, w.month, month_of(slot.time), amount)
        new_w = dataclasses.replace(w, balance=w.balance - amount, day_used=day_used, day=day,
                                    month_used=month_used, month=month)
        version, key = self.keys.current(Purpose.RECORD)
        record = PurchaseRecord(key_version=version, kind=kind, card_id=self.keys.card_id, wallet=w.number,
                                counter=slot.counter, amount=amount, unit=w.unit, product=slot.product,
                                terminal=slot.sam_id, time=slot.time, previous_balance=w.balance,
                                new_balance=new_w.balance)
        signed = sign(key, record)
        wallets = s.wallets[:w.number] + (new_w,) + s.wallets[w.number + 1:]
        return dataclasses.replace(s, wallets=wallets, pending=None, last_time=max(s.last_time, now),
                                   log=(signed,) + s.log[:apdu.LOG_SIZE - 1]), signed

    def _pending_at(self, counter: int) -> PendingSlot:
        slot = self._stored.pending
        if slot is None or slot.counter != counter:
            raise PurseRefused(Refusal.NO_PENDING)
        return slot

    def settle(self, req: apdu.SettleRequest) -> bytes:
        """SETTLE the purchase reserved in this same session; a purchase left by a pulled card is
        COMPLETE PENDING's."""
        session = self._session()
        self._pending_at(req.counter)
        _refuse(session.reserved_counter != req.counter, Refusal.CONDITIONS)
        new, signed = self._debit(self._stored, req.final_amount, Kind.PURCHASE, session.time)
        self._commit(Cmd.SETTLE, new)
        session.reserved_counter = None
        return signed

    def complete(self, req: apdu.CompleteRequest) -> bytes:
        """COMPLETE PENDING at a later insertion: the final amount at the reserving SAM, or the full reserve
        once the grace time has passed (by this session's time)."""
        session = self._session()
        slot = self._pending_at(req.counter)
        if req.final_amount is None:
            _refuse(session.time < slot.time + GRACE_SECONDS, Refusal.TOO_EARLY)
            amount = slot.reserved
        else:
            _refuse(session.sam_id != slot.sam_id, Refusal.TOO_EARLY)
            amount = req.final_amount
        new, signed = self._debit(self._stored, amount, Kind.RECOVERED, session.time)
        self._commit(Cmd.COMPLETE_PENDING, new)
        return signed

    # -- load -------------------------------------------------------------------------------------------
    def init_load(self, req: apdu.InitLoadRequest) -> apdu.InitLoadAnswer:
        """The card's request for a load, MACed under its AUTH key for the issuer; nothing is written."""
        self._session()
        s = self._stored
        _refuse(s.status is not Status.ACTIVE, Refusal.BLOCKED)
        _refuse(s.counter >= _U32, Refusal.COUNTER)
        w = self.wallet(req.wallet)
        _refuse(w.balance + req.amount > _U32, Refusal.OVERFLOW)
        version, key = self.keys.current(Purpose.AUTH)
        message = pk.init_load_message(self.keys.card_id, key_version=version, wallet=w.number,
                                       counter=s.counter, amount=req.amount, unit=w.unit, balance=w.balance)
        return apdu.InitLoadAnswer(key_version=version, counter=s.counter, unit=w.unit, balance=w.balance,
                                   mac=mac(key, message))

    def load(self, req: apdu.LoadRequest) -> bytes:
        """Credit a wallet if the issuer's load MAC checks for this card at its current counter; the load
        then takes the next counter, which its record carries."""
        session = self._session()
        s = self._stored
        _refuse(s.status is not Status.ACTIVE, Refusal.BLOCKED)
        _refuse(s.counter >= _U32, Refusal.COUNTER)
        w = self.wallet(req.wallet)
        key = self.keys.key(Purpose.LOAD, req.key_version)
        _refuse(key is None, Refusal.NOT_FOUND)
        message = pk.load_message(self.keys.card_id, key_version=req.key_version, wallet=w.number,
                                  counter=s.counter, amount=req.amount, unit=w.unit, load_id=req.load_id)
        _refuse(key is None or not verify_mac(key, message, req.mac), Refusal.AUTH_FAILED)
        _refuse(w.balance + req.amount > _U32, Refusal.OVERFLOW)
        new_w = dataclasses.replace(w, balance=w.balance + req.amount)
        version, record_key = self.keys.current(Purpose.RECORD)
        record = PurchaseRecord(key_version=version, kind=Kind.LOAD, card_id=self.keys.card_id,
                                wallet=w.number, counter=s.counter + 1, amount=req.amount, unit=w.unit,
                                product=0, terminal=session.sam_id, time=session.time,
                                previous_balance=w.balance, new_balance=new_w.balance)
        signed = sign(record_key, record)
        wallets = s.wallets[:w.number] + (new_w,) + s.wallets[w.number + 1:]
        self._commit(Cmd.LOAD, dataclasses.replace(s, wallets=wallets, counter=s.counter + 1,
                                                   last_time=max(s.last_time, session.time),
                                                   log=(signed,) + s.log[:apdu.LOG_SIZE - 1]))
        return signed

    # -- issuer scripts ---------------------------------------------------------------------------------
    def apply_script(self, req: apdu.ScriptRequest) -> bytes | None:
        """Run an issuer script MACed under the ADMIN key for this card at its current counter; the counter
        then advances, so a script runs once. COMPLETE_PENDING answers its signed record."""
        session = self._session()
        s = self._stored
        head, payload = req.message[:_ADMIN.size], req.message[_ADMIN.size:]
        mtype, fmt, version, card_id, counter, op, size = _ADMIN.unpack(head)
        _refuse(mtype != ADMIN_TYPE or fmt != LOAD_FORMAT or size != len(payload), Refusal.WRONG_DATA)
        key = self.keys.key(Purpose.ADMIN, version)
        _refuse(key is None, Refusal.NOT_FOUND)
        _refuse(key is None or not verify_mac(key, req.message, req.mac), Refusal.AUTH_FAILED)
        _refuse(card_id != self.keys.card_id or counter != s.counter, Refusal.AUTH_FAILED)
        _refuse(s.counter >= _U32, Refusal.COUNTER)
        new, answer = self._script(s, op, payload, session.time)
        self._commit(Cmd.APPLY_SCRIPT, dataclasses.replace(new, counter=s.counter + 1,
                                                          last_time=max(new.last_time, session.time)))
        return answer

    def _script(self, s: Stored, op: int, payload: bytes, now: int) -> tuple[Stored, bytes | None]:
        if op == AdminOp.BLOCK and not payload:
            return dataclasses.replace(s, status=Status.BLOCKED), None
        if op == AdminOp.UNBLOCK and not payload:
            return dataclasses.replace(s, status=Status.ACTIVE), None
        if op == AdminOp.RESET_PIN_TRIES and not payload:
            return dataclasses.replace(s, pin_tries=PIN_TRIES), None
        if op == AdminOp.SET_LIMITS and len(payload) == _LIMITS.size:
            number, day_limit, month_limit = _LIMITS.unpack(payload)
            _refuse(number >= len(s.wallets), Refusal.WRONG_DATA)
            w = dataclasses.replace(s.wallets[number], day_limit=day_limit, month_limit=month_limit)
            return dataclasses.replace(s, wallets=s.wallets[:number] + (w,) + s.wallets[number + 1:]), None
        if op == AdminOp.COMPLETE_PENDING and len(payload) == _COMPLETION.size:
            counter, final, sam_id = _COMPLETION.unpack(payload)
            slot = self._pending_at(counter)
            _refuse(sam_id != slot.sam_id, Refusal.TOO_EARLY)      # only the reserving SAM's figure
            _refuse(final > slot.reserved, Refusal.ABOVE_RESERVE)
            return self._debit(s, final, Kind.RECOVERED, now)
        raise PurseRefused(Refusal.WRONG_DATA)
