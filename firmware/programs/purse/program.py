"""The chip purse program: fuel paid from a wallet on the card, with or without the registry.

A fleet card whose chip holds a purse with wallets pays from them (docs/chip-wallets.md): the terminal's
SAM and the card authenticate each other, the card checks its PIN itself, a wallet that allows the
product is chosen, and the card reserves up to the preset. The reservation is journaled, by purse and
counter, before RESERVE reaches the card. When the filling ends the card settles the final figure and
signs the record, which the SAM MACs and the terminal keeps until the registry has it. The card stays in
the reader while the pump runs; pulled early, its reservation stays pending and the next insertion
completes it (here with the journaled figure, elsewhere after the grace time). While the registry is
reachable each insertion is also an online contact (firmware.programs.purse.contact): the card's log is
forwarded, issuer scripts applied and ordered loads credited.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

from contracts.cards import mask_number
from contracts.errors import CardError, CardRemoved, HostUnavailable
from contracts.purse_apdu import ReserveRequest
from contracts.purse_keys import Unit
from contracts.purse_messages import MAX_ITEMS
from contracts.purse_records import RECORD_LEN
from contracts.purse_records import decode as decode_record
from contracts.purse_service import MAX_ADVICES
from contracts.purse_wallets import PurseInfo, Refusal, Status, day_of
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.emv.apdu import Transmitter
from firmware.programs.base import CardIn, ChipCard, Claim, Decline, Grant, ReceiptHead, SaleSteps
from firmware.programs.fleet.card import read_fleet_card
from firmware.programs.purse import choice
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.channel import PurseChannel, PurseRefused, SamError
from firmware.programs.purse.contact import online_contact
from firmware.programs.purse.pending import complete_pending
from firmware.programs.purse.receipt import purse_lines
from firmware.programs.purse.service import PurseService
from firmware.sale.record import Preset, SaleRecord

__all__ = ["PENDING_FLAG", "PURSE", "PurseCard", "PurseProgram"]

log = logging.getLogger(__name__)

PURSE = "purse"                 # the sale data's document of the purse purchase
PENDING_FLAG = "purse_pending"  # settled at the card's next insertion, not at the end of the filling
R, D = Refusal, DeclineReason
_REFUSALS = {R.WRONG_PIN: D.WRONG_PIN, R.PIN_BLOCKED: D.PIN_TRIES_EXCEEDED, R.PRODUCT: D.PRODUCT_NOT_ALLOWED,
             R.EXPIRED: D.CARD_EXPIRED, R.BALANCE: D.INSUFFICIENT_FUNDS, R.DAY_LIMIT: D.LIMIT_EXHAUSTED,
             R.MONTH_LIMIT: D.LIMIT_EXHAUSTED, R.BLOCKED: D.CARD_BLOCKED, R.PENDING: D.PURCHASE_OPEN,
             R.TOO_EARLY: D.PURCHASE_OPEN}


@dataclass(frozen=True)
class PurseCard:
    reader: Transmitter
    info: PurseInfo
    number: str                 # the fleet application's card number (never logged), or the purse id
    masked: str


class PurseProgram:
    name = "purse"
    sells_offline = True        # the card itself pays: no registry needed
    keeps_card = True           # the card settles at the end of the filling: the terminal keeps it in

    def __init__(self, sam: Transmitter | None, book: PurseBook, *, most_cents: int, most_cl: int,
                 service: PurseService | None = None, language: str = "en",
                 forward_every: float = 30.0) -> None:
        """sam: the terminal's SAM (None: no purse sales); service: the registry's purse requests (None: a
        terminal that never reaches it); language: the receipt's; forward_every: seconds between tries
        to hand the records over while any wait."""
        self.sam, self.book, self.service, self.language = sam, book, service, language
        self.most_cents, self.most_cl = most_cents, most_cl
        self.sam_id: bytes | None = None
        self._channels: dict[str, PurseChannel] = {}       # sale id -> its card session, until settled
        self._current: PurseChannel | None = None          # the SAM's one session: the last one opened
        self._lock = threading.Lock()
        self._sam_lock = threading.RLock()                 # one exchange with the SAM at a time
        self._forward_lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._every = forward_every
        self._thread: threading.Thread | None = None

    # -- records to the registry ----------------------------------------------------------------------
    def start(self) -> None:
        if self.sam is not None:
            try:
                with self._sam_lock:
                    self.sam_id = PurseChannel.sam_identity(self.sam)   # records can go before any card
            except CardError as exc:
                log.error("SAM unreadable at start", extra={"error": str(exc)})
        self._stop.clear()
        self._thread = threading.Thread(target=self._forwarder, name="purse-forward", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _forwarder(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self._every)
            self._kick.clear()
            if not self._stop.is_set():
                try:
                    self.forward()
                except Exception:            # the thread must outlive any one failure
                    log.exception("purse records not forwarded")

    def forward(self, *, wait: bool = True) -> None:
        """Hand the signed records and advices to the registry; what it acknowledged leaves the journal.
        wait=False: skip when a hand-over is already under way (a driver is waiting)."""
        service, sam_id = self.service, self.sam_id
        if service is None or sam_id is None or not service.online:
            return
        if not self._forward_lock.acquire(blocking=wait):
            return
        try:
            out = self.book.outgoing()[:MAX_ITEMS]
            advices = dict(list(self.book.advices().items())[:MAX_ADVICES])
            if not out and not advices:
                return
            try:
                service.records(sam_id, [o.message() for o in out], list(advices.values()))
            except HostUnavailable as exc:
                log.info("purse records not forwarded yet", extra={"error": str(exc)})
                return
            self.book.sent([o.key for o in out] + list(advices))
        finally:
            self._forward_lock.release()

    # -- claim ----------------------------------------------------------------------------------------
    def claim(self, card: CardIn) -> Claim | Decline | None:
        if not isinstance(card, ChipCard) or self.sam is None:
            return None
        try:
            fleet = read_fleet_card(card.reader)
        except CardError:
            fleet = None
        try:
            info = PurseChannel(card.reader, self.sam).select()
        except CardRemoved:
            return Decline(DeclineReason.CARD_REMOVED, Screen.CARD_REMOVED)
        except PurseRefused:
            return None             # no purse on this card
        except CardError:
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)
        if info.wallet_count == 0 and info.pending is None:
            return None             # a purse without wallets: the card's other applications serve it
        # a purse without a fleet application is known by its purse id, masked as a number would be
        number = fleet.pan if fleet is not None else info.purse_id.hex().upper()
        masked = mask_number(number) if fleet is not None else "*" * 12 + number[-4:]
        return Claim(self, PurseCard(card.reader, info, number, masked))

    # -- authorize ------------------------------------------------------------------------------------
    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        if self.sam is None:
            return Decline(DeclineReason.NOT_ACCEPTED, Screen.CARD_NOT_ACCEPTED)
        card: PurseCard = claim.card
        channel = PurseChannel(card.reader, self.sam)
        now = int(steps.now().timestamp())
        try:
            with self._sam_lock:
                with self._lock:
                    self._current = channel       # a session still held for an earlier sale ends here
                return self._authorize(card, channel, steps, now)
        except PurseRefused as exc:
            log.info("purse refused", extra={"reason": exc.context.get("reason"),
                                             "sw": exc.context.get("sw")})
            tries = {} if exc.tries_left is None else {"pin_tries_left": exc.tries_left}
            reason = _REFUSALS.get(exc.refusal) if exc.refusal is not None else None
            return Decline(reason or DeclineReason.CARD_DECLINED, data=tries)
        except SamError as exc:
            log.error("SAM refused", extra={"error": str(exc)})
            return Decline(DeclineReason.CHIP_ERROR, Screen.CARD_ERROR)
        except CardRemoved:
            return Decline(DeclineReason.CARD_REMOVED, Screen.CARD_REMOVED)
        except CardError as exc:
            log.warning("purse card error", extra={"error": str(exc)})
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)

    def _authorize(self, card: PurseCard, channel: PurseChannel, steps: SaleSteps,
                   now: int) -> Grant | Decline:
        info = channel.open(now)
        self.sam_id = channel.sam_id
        if self.service is not None:
            def loaded(amount: int, unit: Unit) -> None:
                figure = {"volume_cl": amount} if unit is Unit.VOLUME else {
                    "amount_cents": amount, "currency": steps.station().currency}
                steps.port.notice(Screen.CARD_LOADED, 3.0, **figure)
            info = online_contact(channel, info, self.service, self.book, loaded=loaded, now=now,
                                  forward=lambda: self.forward(wait=False))
        elif self.book.advices():
            for entry in channel.log():           # what a settle left unanswered is in the card's log
                self.book.queue(entry.signed)
        if info.pending is not None:
            info = complete_pending(channel, info, self.book, now)
        if info.status is Status.BLOCKED:
            return Decline(DeclineReason.CARD_BLOCKED)
        if info.wallet_count == 0:
            return Decline(DeclineReason.NOT_ACCEPTED, Screen.CARD_NOT_ACCEPTED)
        if info.pin_tries == 0:
            return Decline(DeclineReason.PIN_TRIES_EXCEEDED)
        block = steps.port.offline_pin(info.pin_tries == 1, info.pin_tries)
        try:
            channel.verify_pin(_digits(block))
        finally:
            block[:] = bytes(len(block))
        pump = steps.choose_pump()
        wallets = channel.wallets(info.wallet_count)
        options = choice.options(wallets, steps.station(), pump, day=day_of(now))
        if not options:
            spent = choice.allowed_somewhere(wallets, steps.station(), pump, day=day_of(now))
            return Decline(DeclineReason.LIMIT_EXHAUSTED if spent else DeclineReason.PRODUCT_NOT_ALLOWED)
        option = options[0]
        if len(options) > 1:
            station = steps.station()
            prices = [(o.name, max(station.price(pump, n) or 0 for n in o.nozzles)) for o in options]
            picked = steps.port.choose_product(prices, station.currency)
            option = options[picked or 0]
        preset = choice.preset(option, most_cents=self.most_cents, most_cl=self.most_cl)
        sale_id = steps.begin(pump, card.number, masked=card.masked)
        counter = info.counter + 1          # the card advances its counter, then reserves under it
        doc = {"purse_id": info.purse_id.hex(), "wallet": option.wallet.number,
               "unit": option.wallet.unit.name, "product3": option.code3, "counter": counter}
        steps.authorizing({PURSE: doc})
        self.book.expect(info.purse_id, counter, sale_id)          # before the card reserves
        try:
            answer = channel.reserve(_reserve_request(option, preset, now, sale_id))
        except CardError:            # it may have reserved: nothing was dispensed, say so for elsewhere
            self.book.advise(info.purse_id, counter, 0, sale_id)
            raise
        if answer.counter != counter:
            log.warning("purse reserved under another counter", extra={"expected": counter,
                                                                        "counter": answer.counter})
            self.book.expect(info.purse_id, answer.counter, sale_id)
        granted = Preset(preset.kind, answer.reserved)
        with self._lock:
            self._channels[sale_id] = channel
        return Grant(granted, nozzles=option.nozzles, reference=f"{info.purse_id.hex()}:{answer.counter}",
                     data={PURSE: {**doc, "counter": answer.counter, "reserved": answer.reserved}},
                     notice=(Screen.KEEP_CARD, {}), product_asked=len(options) > 1)

    # -- settle ---------------------------------------------------------------------------------------
    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        doc = sale.data.get(PURSE)
        if not isinstance(doc, dict):
            return ()
        with self._lock:
            channel = self._channels.pop(sale.id, None)
            current = channel is not None and channel is self._current
        if "record" in doc:
            return ()                                   # settled before a restart
        purse_id, counter = bytes.fromhex(doc["purse_id"]), int(doc["counter"])
        final = charged_cents if doc["unit"] == Unit.MONEY.name else (sale.volume_cl or 0)
        final = min(final, int(doc.get("reserved", final)))   # a pump past its preset: the card took no more
        if channel is None or not current:
            # after a restart, or another card's session since: this card completes it at its next insertion
            self.book.advise(purse_id, counter, final, sale.id)
            self._kick.set()
            return (PENDING_FLAG,)
        with self._sam_lock:
            try:
                signed = channel.settle(counter, final)
            except CardError as exc:
                log.warning("purse not settled: completed at the card's next insertion",
                            extra={"sale_id": sale.id, "error": str(exc)})
                self.book.advise(purse_id, counter, final, sale.id)
                self._kick.set()
                return (PENDING_FLAG,)
            self.book.queue(signed)                     # kept before anything else can fail
            try:
                sequence, sam_mac = channel.mac_record(signed)
                self.book.queue(signed, sequence, sam_mac, channel.sam_id)
            except CardError as exc:
                log.warning("SAM did not MAC the record: it goes with the card's MAC only",
                            extra={"error": str(exc)})
        self._kick.set()
        record = decode_record(signed[:RECORD_LEN])
        self.book.journal.transition(sale.id, sale.state, data={**sale.data, PURSE: {
            **doc, "record": signed.hex(), "balance": record.new_balance, "debited": record.amount}})
        return ()

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        """Stopped before the pump was released: nothing was dispensed; a reservation the card may hold is
        completed with nothing at its next insertion (here from the journal, elsewhere by the advice)."""
        doc = sale.data.get(PURSE)
        if isinstance(doc, dict) and "counter" in doc:
            self.book.advise(bytes.fromhex(doc["purse_id"]), int(doc["counter"]), 0, sale.id)
        return Decline(DeclineReason.INTERRUPTED)

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        return purse_lines(sale, head, self.language)


def _reserve_request(option: choice.Option, preset: Preset, now: int, sale_id: str) -> ReserveRequest:
    return ReserveRequest(wallet=option.wallet.number, product=option.code3, max_amount=preset.value,
                          time=now, sale_id=uuid.UUID(sale_id).bytes)


def _digits(block: bytearray) -> str:
    """The PIN digits of an ISO 9564 format 2 block (as the PIN pad gives it for an offline PIN)."""
    count = block[0] & 0x0F
    nibbles = "".join(f"{b:02X}" for b in block[1:])
    return nibbles[:count]

