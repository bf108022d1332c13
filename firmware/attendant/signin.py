"""Who is at the terminal: an attendant card recognised by the signed configuration's attendant entries
(contracts.signing CONFIG_BODY "attendants": the card's entry is this terminal's keyed stop-list style
entry of "attendant:" and its number, never the number), then the PIN.

Online the PIN travels as a PIN block (as a fleet card's) in the registry's attendant_signin, which counts
wrong tries and locks out centrally. When the registry cannot be reached the PIN is checked against the
configuration's PBKDF2 verifier, with the terminal's own counter: after `tries` wrong PINs in a row the
attendant is locked out at this terminal until a sign-in the registry accepts (the registry then decides).
The counter follows the registry's: a wrong PIN it counts sets it to the registry's count, a lockout to the
limit; offline a try is counted before the PIN is checked (a power cut during the check costs a try, never
gives one back) and the count is cleared on success.

An online sign-in answers a ticket (contracts.service_messages.TICKET) that the attendant's requests carry:
it stays in the session, in memory only (never journaled or logged). An attendant signed in offline has
none: the registry's requests (a top-up, points) wait for a sign-in while online.
Nothing here logs or keeps a PIN or a card number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.errors import CardError, CardNotAccepted, HostUnavailable
from contracts.panseal import TAG_NUMBER, pin_pan
from contracts.service_messages import ServiceReason
from contracts.signing import pin_matches
from firmware.programs.base import CardIn, ChipCard, Contactless, Swipe
from firmware.programs.fleet.card import read_fleet_card
from firmware.sale.journal import Journal

__all__ = ["CARD_PREFIX", "CardNumber", "Entry", "Refusal", "Session", "SignInGate", "card_of",
           "pin_digits"]

log = logging.getLogger(__name__)

CARD_PREFIX = "attendant:"          # registry.attendants.CARD_ENTRY_PREFIX


@dataclass(frozen=True, repr=False)
class CardNumber:
    """A card's number (a PAN, or "U" and a tag's UID) and medium, as read; never logged."""

    number: str
    medium: str

    def __repr__(self) -> str:
        return f"CardNumber(medium={self.medium})"


@dataclass(frozen=True)
class Entry:
    """An attendant of the configuration."""

    id: str
    name: str
    role: str
    pin_verifier: str = field(repr=False)


@dataclass(frozen=True)
class Session:
    attendant: str
    name: str
    role: str
    online: bool                    # the registry checked the PIN
    ticket: str | None = field(default=None, repr=False)    # the online sign-in's; memory only


@dataclass(frozen=True)
class Refusal:
    reason: str                     # a contracts.service_messages.ServiceReason value
    tries_left: int | None = None
    online: bool = True             # the registry refused (False: the terminal's own check)


class Host(Protocol):
    @property
    def online(self) -> bool: ...
    @property
    def config(self) -> dict[str, Any] | None: ...
    def stop_entry(self, number: str) -> str: ...


class Asker(Protocol):
    def ask(self, op: str, fields: Mapping[str, Any] | None = None, *, card: str | None = None,
            medium: str = "chip", code: str | None = None, request_id: str | None = None,
            sealed: Mapping[str, str] | None = None) -> Any: ...


class PinPort(Protocol):
    def pin_block(self, pan: str) -> bytes: ...
    def offline_pin(self, last_try: bool, tries: int | None = None) -> bytearray: ...


def card_of(card: CardIn) -> CardNumber | None:
    """The number on a card as any attendant card may carry it: a fleet-style chip record, a stripe, a tag."""
    if isinstance(card, Swipe):
        return CardNumber(card.track.pan, "stripe")
    if isinstance(card, Contactless):
        number = "U" + card.uid.hex().upper()
        return CardNumber(number, "tag") if TAG_NUMBER.fullmatch(number) else None
    if isinstance(card, ChipCard):
        try:
            return CardNumber(read_fleet_card(card.reader).pan, "chip")
        except (CardNotAccepted, CardError):
            return None
    return None


def find(host: Host, card: CardNumber) -> Entry | None:
    """The configuration's attendant whose card this is, or None."""
    entries = (host.config or {}).get("attendants") or []
    if not entries:
        return None
    mine = host.stop_entry(CARD_PREFIX + card.number)
    for e in entries:
        if e.get("card") == mine:
            return Entry(e["id"], e["name"], e["role"], e["pin_verifier"])
    return None


def pin_digits(block: bytearray) -> str:
    """The PIN of an ISO 9564 format 2 plaintext block (what the PIN pad gives for an offline check)."""
    if len(block) != 8 or block[0] >> 4 != 0x2 or not 4 <= (block[0] & 0xF) <= 12:
        return ""
    nibbles = [n for b in block[1:] for n in (b >> 4, b & 0xF)]
    digits = nibbles[:block[0] & 0xF]
    return "".join(str(d) for d in digits) if all(d <= 9 for d in digits) else ""


class SignInGate:
    def __init__(self, host: Host, service: Asker, journal: Journal, clock: Callable[[], float], *,
                 tries: int = 5) -> None:
        self.host, self.service, self.journal, self.clock, self.tries = host, service, journal, clock, tries

    def sign_in(self, card: CardNumber, entry: Entry, port: PinPort) -> Session | Refusal:
        if self.host.online:
            try:
                return self._online(card, entry, port)
            except HostUnavailable as exc:
                log.warning("attendant sign-in: registry unavailable, checking offline",
                            extra={"attendant": entry.id, "error": str(exc)})
        return self._offline(entry, port)

    def _online(self, card: CardNumber, entry: Entry, port: PinPort) -> Session | Refusal:
        block = port.pin_block(pin_pan(card.number))
        try:
            answer = self.service.ask("attendant_signin", {"pin_block": block.hex().upper()},
                                      card=card.number, medium=card.medium)
        finally:
            del block
        if not answer.ok:
            log.warning("attendant sign-in refused", extra={"attendant": entry.id, "reason": answer.reason})
            self._follow(entry.id, answer.reason, answer.tries_left)
            return Refusal(answer.reason or ServiceReason.NOT_ALLOWED, answer.tries_left)
        result = answer.result
        if result.get("attendant") != entry.id:
            log.error("registry signed in another attendant than the card's", extra={"attendant": entry.id})
            return Refusal(ServiceReason.NOT_ALLOWED)
        self._put_wrong(entry.id, 0)                 # the registry accepted: the local counter starts anew
        log.info("attendant signed in", extra={"attendant": entry.id, "online": True})
        return Session(entry.id, str(result.get("name") or entry.name), str(result.get("role") or entry.role),
                       online=True, ticket=str(result["ticket"]))

    def _follow(self, attendant: str, reason: str, tries_left: int | None) -> None:
        """The local counter set to the registry's: its count of wrong PINs, or the limit when locked."""
        if reason == ServiceReason.LOCKED:
            self._put_wrong(attendant, self.tries)
        elif reason == ServiceReason.WRONG_PIN and tries_left is not None:
            self._put_wrong(attendant, max(0, min(self.tries, self.tries - tries_left)))

    def _wrong(self, attendant: str) -> int:
        raw = self.journal.get_value(f"attendant:wrong:{attendant}")
        try:
            return int(json.loads(raw)["wrong"]) if raw else 0
        except (ValueError, TypeError, KeyError):
            return self.tries                         # a damaged counter locks rather than opens

    def _put_wrong(self, attendant: str, wrong: int) -> None:
        if wrong:
            self.journal.put(f"attendant:wrong:{attendant}", json.dumps({"wrong": wrong, "at": self.clock()}))
        else:
            self.journal.delete(f"attendant:wrong:{attendant}")

    def _offline(self, entry: Entry, port: PinPort) -> Session | Refusal:
        wrong = self._wrong(entry.id)
        left = self.tries - wrong
        if left <= 0:
            log.warning("attendant locked out at this terminal", extra={"attendant": entry.id})
            return Refusal(ServiceReason.LOCKED, 0, online=False)
        block = port.offline_pin(left == 1, left)
        try:
            self._put_wrong(entry.id, wrong + 1)     # counted before the check (kept if it fails)
            ok = pin_matches(entry.pin_verifier, pin_digits(block))
        finally:
            block[:] = bytes(len(block))
        if ok:
            self._put_wrong(entry.id, 0)
            log.info("attendant signed in", extra={"attendant": entry.id, "online": False})
            return Session(entry.id, entry.name, entry.role, online=False)
        log.warning("attendant wrong PIN (offline)", extra={"attendant": entry.id, "tries_left": left - 1})
        if left - 1 <= 0:
            log.warning("attendant locked out at this terminal", extra={"alarm": "attendant_lockout",
                                                                        "attendant": entry.id})
            return Refusal(ServiceReason.LOCKED, 0, online=False)
        return Refusal(ServiceReason.WRONG_PIN, left - 1, online=False)
