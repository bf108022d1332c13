"""An online contact: while the registry is reachable, a card in the reader is brought up to date before
it pays (docs/chip-wallets.md). Its log goes to the registry (which counts each record once and settles
loads and gaps from it); the issuer's scripts are applied in order (block, unblock, completion of a
reservation left elsewhere, PIN tries, limits); then the loads the registry owes or was ordered to make.
A top-up is the card's own request (INITIALIZE LOAD, MACed under its AUTH key) answered by the issuer's
load MAC; the terminal only relays. Without the registry none of this happens and the card pays from what
it holds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from contracts import purse_apdu as apdu
from contracts.errors import CardError, HostUnavailable
from contracts.purse_keys import Unit
from contracts.purse_wallets import PurseInfo, Status
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.channel import PurseChannel, PurseRefused
from firmware.programs.purse.service import PurseService

__all__ = ["online_contact"]

log = logging.getLogger(__name__)


def _queue(channel: PurseChannel, book: PurseBook, signed: bytes) -> None:
    book.queue(signed)                    # kept first: the SAM may fail next
    try:
        sequence, mac = channel.mac_record(signed)
    except CardError as exc:
        log.warning("SAM did not MAC a record", extra={"error": str(exc)})
        return
    book.queue(signed, sequence, mac, channel.sam_id)


def _scripts(channel: PurseChannel, book: PurseBook, scripts: list[Mapping[str, Any]]) -> list[int]:
    applied = []
    for script in scripts:
        request = apdu.ScriptRequest(bytes.fromhex(script["message"]), bytes.fromhex(script["mac"]))
        try:
            answer = channel.send(apdu.apply_script(request))
        except PurseRefused as exc:          # the counter moved on: the registry issues it again next time
            log.warning("issuer script refused", extra={"script": script["script_id"],
                                                        "sw": exc.context["sw"]})
            break
        applied.append(int(script["script_id"]))
        if answer:                           # a completion: the card's record of the debit
            _queue(channel, book, answer)
    return applied


def _load(channel: PurseChannel, book: PurseBook, wallet: int, amount: int, load_id: bytes, version: int,
          mac: bytes) -> bool:
    try:
        signed = channel.send(apdu.load(apdu.LoadRequest(version, wallet, amount, load_id, mac)))
    except PurseRefused as exc:
        log.warning("load refused by the card", extra={"sw": exc.context["sw"]})
        return False
    _queue(channel, book, signed)
    return True


def _topup(channel: PurseChannel, book: PurseBook, service: PurseService, info: PurseInfo,
           offer: Mapping[str, Any]) -> Unit | None:
    """The ordered top-up through the card and the registry; its unit once the card took it."""
    wallet, amount, load_id = int(offer["wallet"]), int(offer["amount"]), bytes.fromhex(offer["load_id"])
    asked = apdu.initialize_load(apdu.InitLoadRequest(wallet, amount))
    try:
        init = apdu.InitLoadAnswer.decode(channel.send(asked))
    except PurseRefused as exc:           # this wallet takes no load now: the order waits
        log.warning("card refused INITIALIZE LOAD", extra={"sw": exc.context["sw"]})
        return None
    grant = service.load({"load_id": load_id.hex(), "purse_id": info.purse_id.hex(), "wallet": wallet,
                          "counter": init.counter, "amount": amount, "unit": int(init.unit),
                          "balance": init.balance, "key_version": init.key_version, "mac": init.mac.hex()})
    if not grant["granted"]:
        log.info("top-up not granted", extra={"reason": grant["reason"]})
        return None
    version, mac = int(grant["key_version"]), bytes.fromhex(grant["mac"])
    return init.unit if _load(channel, book, wallet, amount, load_id, version, mac) else None


def online_contact(channel: PurseChannel, info: PurseInfo, service: PurseService, book: PurseBook, *,
                   forward: Callable[[], None], loaded: Callable[[int, Unit], None], now: int) -> PurseInfo:
    """Bring the card up to date; the purse as it is afterwards (a new session when anything changed).
    loaded(amount, unit) is told of each top-up the card took."""
    if not service.online:
        return info
    changed = False
    try:
        for entry in channel.log():
            book.queue(entry.signed)
        forward()
        slot = info.pending                  # its counter and sale: the registry's completion is that sale's
        sale = str(uuid.UUID(bytes=slot.sale_id)) if slot is not None else None
        answer = service.contact(info.purse_id, info.counter, blocked=info.status is Status.BLOCKED,
                                 pending=slot.counter if slot is not None else None, pending_sale=sale)
        scripts = list(answer["scripts"])
        applied = _scripts(channel, book, scripts)
        changed = bool(applied)
        if applied:
            service.applied(info.purse_id, applied)
        if len(applied) < len(scripts):
            # a script refused: the counters the loads were made for are not the card's
            return channel.open(now) if changed else info
        for owed in answer["loads"]:
            changed |= _load(channel, book, int(owed["wallet"]), int(owed["amount"]), bytes.fromhex(
                owed["load_id"]), int(owed["key_version"]), bytes.fromhex(owed["mac"]))
        for offer in answer["topups"]:
            unit = _topup(channel, book, service, info, offer)
            if unit is not None:
                changed = True
                loaded(int(offer["amount"]), unit)
        forward()
    except HostUnavailable as exc:
        log.info("online contact cut short: the card pays offline", extra={"error": str(exc)})
    return channel.open(now) if changed else info
