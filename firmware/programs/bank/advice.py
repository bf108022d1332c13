"""What a bank sale keeps between its pre-authorization and its final advice, and the advice sender.

The card context (PAN, expiry, original STAN and time, RRN, auth code, approved amount, ICC data) is
held encrypted in the store-and-forward file, never in the journal. settle() turns it into exactly one
0220 completion or 0420 reversal and erases it in the same transaction; a forwarder thread sends the
queued advices until the acquirer acknowledges them, across restarts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from contracts import iso8583_spec
from contracts.errors import HostUnavailable, MessageError, SyncError
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import AdviceKind, Exchanger, StoreAndForward

__all__ = ["AdviceForwarder", "CardContext", "Sold", "Stan", "build_final_advice", "fuel_lines"]

log = logging.getLogger(__name__)


@dataclass(repr=False)
class CardContext:
    pan: str
    expiry: str
    entry_mode: str
    pan_sequence: str | None
    pump: int
    requested: int                     # field 4 of the 0100
    stan: str                          # of the 0100
    transmission: str                  # field 7 of the 0100
    icc: str = ""                      # field 55 of the last card exchange, hex
    approved: int = 0
    rrn: str | None = None
    auth_code: str | None = None

    def __repr__(self) -> str:
        return f"CardContext(pump={self.pump}, stan={self.stan}, approved={self.approved})"

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, raw: bytes) -> CardContext:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError, RecursionError) as exc:    # RecursionError: JSON nested too deep
            raise SyncError("stored card context is damaged") from exc

    @property
    def card(self) -> iso.Card:
        return iso.Card(pan=self.pan, expiry=self.expiry, entry_mode=self.entry_mode,
                        pan_sequence=self.pan_sequence)

    @property
    def original(self) -> iso.Original:
        return iso.Original(stan=self.stan, transmission=self.transmission, rrn=self.rrn,
                            auth_code=self.auth_code)


class Stan:
    """The System Trace Audit Number (field 11): 1..999999, one per message, persisted before use."""

    def __init__(self, load: Callable[[], str | None], save: Callable[[str], None]) -> None:
        self._load, self._save = load, save
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            value = int(self._load() or "0") % 999_999 + 1
            self._save(str(value))
            return value


@dataclass(frozen=True)
class Sold:
    """What the pump says was sold: the station's product name, centilitres, price a litre in thousandths."""

    product: str | None = None
    volume_cl: int = 0
    price_milli: int = 0


def fuel_lines(sold: Sold | None, amount: int) -> list[iso.FuelLine]:
    """Field 63 of the completion: one line for the product, its Conexxus code from the dialect's table
    (an unknown product as "other fuel"), litres and unit price as the pump counted them."""
    sold = sold or Sold()
    codes = iso8583_spec.PRODUCT_CODES
    return [iso.FuelLine(product=codes.get(sold.product or "", codes["other"]),
                         quantity_milli=max(sold.volume_cl, 0) * 10,
                         unit_price_milli=max(sold.price_milli, 0), amount=amount)]


def build_final_advice(ctx: CardContext, *, terminal: iso.Terminal, dispensed: int, stan: int,
                       when: dt.datetime, reason: iso.ReversalReason | None = None,
                       sold: Sold | None = None,
                       dialect: iso.Dialect = iso.DIALECT) -> tuple[AdviceKind, bytes]:
    """A 0220 for what was dispensed, or a 0420 when nothing was (or the sale failed: reason)."""
    icc = bytes.fromhex(ctx.icc) or None
    original = dataclasses.replace(ctx.original, acquirer_id=terminal.acquirer_id)
    if reason is None and dispensed > 0:
        amount = min(dispensed, ctx.approved)
        return AdviceKind.COMPLETION, iso.completion_advice(
            terminal=terminal, card=ctx.card, original=original, authorized_amount=ctx.approved,
            dispensed_amount=amount, stan=stan, when=when, icc_tlv=icc, fuel=fuel_lines(sold, amount),
            dialect=dialect)
    return AdviceKind.REVERSAL, iso.reversal_advice(
        terminal=terminal, card=ctx.card, original=original, amount=ctx.approved or ctx.requested,
        reason=reason or iso.ReversalReason.NOTHING_DISPENSED, stan=stan, when=when, icc_tlv=icc,
        dialect=dialect)


class AdviceForwarder:
    """Sends queued advices now (kick) and every interval seconds, on its own acquirer connection."""

    def __init__(self, saf: StoreAndForward, link: Exchanger, *, timeout: float,
                 interval: float = 10.0, dialect: iso.Dialect = iso.DIALECT) -> None:
        self.saf, self.link, self.timeout, self.interval = saf, link, timeout, interval
        self.dialect = dialect
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="advice-forwarder", daemon=True)

    def start(self) -> AdviceForwarder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=self.timeout + 2)

    def kick(self) -> None:
        self._kick.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.saf.forward(self.link, self.timeout, stop=self._stop.is_set,
                                          dialect=self.dialect)
                if report.acked or report.refused:
                    log.info("advices forwarded", extra={"acked": report.acked, "refused": report.refused})
            except (HostUnavailable, MessageError, SyncError) as exc:
                log.warning("advice forwarding failed", extra={"error": type(exc).__name__})
            except Exception:   # the forwarder must outlive any surprise: advices wait, they are not lost
                log.exception("advice forwarder error")
            self._kick.wait(self.interval)
            self._kick.clear()
