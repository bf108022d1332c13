"""A purchase the card still holds open from an earlier insertion: completed once, before anything else.

At the terminal that reserved it (its journal names the sale for the purse and counter), with the
figure that sale journaled: what the pump dispensed, or nothing for a sale stopped before the pump ran.
At another terminal, once the reservation is older than the grace time, the card debits the whole
reserve (a recovered record) and the registry credits back what was not dispensed; before that the
card is refused (docs/chip-wallets.md, "A card pulled at any step").
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from contracts.errors import CardError, JournalError
from contracts.purse_keys import Unit
from contracts.purse_wallets import PurseInfo, Refusal
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.channel import PurseChannel, PurseRefused
from firmware.sale.machine import OPEN_STATES
from firmware.sale.record import SaleRecord

__all__ = ["GRACE_SECONDS", "complete_pending", "final_figure"]

log = logging.getLogger(__name__)

GRACE_SECONDS = 30 * 60


def final_figure(sale: SaleRecord, unit: str) -> int | None:
    """What the sale settles on the card, in the wallet's unit; None while its pump may still run."""
    if sale.state in OPEN_STATES and sale.charged_cents is None:
        return None
    if unit == Unit.MONEY.name:
        return sale.charged_cents or 0
    return sale.volume_cl or 0


def complete_pending(channel: PurseChannel, info: PurseInfo, book: PurseBook, now: int) -> PurseInfo:
    """Complete info.pending on the card; the purse as it is then. PurseRefused(PENDING) while the sale
    here still runs, PurseRefused(TOO_EARLY) at another terminal within the grace time. The reservation is
    this terminal's when its SAM made it; its sale is the one whose id the card keeps."""
    pending = info.pending
    if pending is None:
        return info
    final: int | None = None
    sale = None
    if channel.sam_id is not None and pending.sam_id == channel.sam_id:
        try:
            sale = book.journal.get(str(uuid.UUID(bytes=pending.sale_id)))
        except (JournalError, ValueError):
            sale = None
    if sale is not None:
        doc = sale.data.get("purse")
        unit = doc.get("unit", Unit.VOLUME.name) if isinstance(doc, dict) else Unit.VOLUME.name
        final = final_figure(sale, unit)
        if final is None:
            raise PurseRefused(Refusal.PENDING)
        final = min(final, pending.reserved)
    elif now - pending.time < GRACE_SECONDS:
        raise PurseRefused(Refusal.TOO_EARLY)
    signed = channel.complete(pending.counter, final)
    book.queue(signed)
    try:
        sequence, mac = channel.mac_record(signed)
        book.queue(signed, sequence, mac, channel.sam_id)
    except CardError as exc:              # the SAM did not MAC it: the card's own MAC still proves it
        log.warning("SAM did not MAC a completion", extra={"error": str(exc)})
    log.info("purse purchase completed", extra={"counter": pending.counter, "here": sale is not None})
    return dataclasses.replace(info, pending=None)
