"""Issuer scripts: what the terminal applies to a purse at an online contact (docs/chip-wallets.md, APPLY
SCRIPT; docs/chip-wallet-registry.md "Scripts").

At each contact the card tells its counter; scripts_for answers the scripts due, in order, each MACed under
the card's ADMIN key for one counter (contracts.purse_keys.admin_message): the first for the counter the
card has, the next for one more (the card advances its counter as it applies each). Due are:

- BLOCK when the registry card is blocked, lost, stolen or otherwise on the stop-list and the chip is not
  known to be blocked; UNBLOCK when the card is active again and the chip is blocked;
- RESET_PIN_TRIES and SET_LIMITS an operator asked for (request_script);
- COMPLETE_PENDING for a reservation another terminal left open, when the registry holds the reserving
  terminal's advice of the pump's figure (record_advice: its payload names the advising SAM, and the card
  refuses it unless that SAM reserved) and no record of that counter has counted yet; of the advices of
  that counter, the one of the sale the card's pending slot keeps (choose_completion).

A script stays open until the terminal reports it applied (script_applied); issued again at the next
contact it names the new counter, so an old MAC is good for nothing. Nothing commits here.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.purse_keys import AdminOp, Purpose, admin_message, mac
from registry.fleet import ledger
from registry.fleet.cards import STOP_LIST
from registry.models import Card
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import PurseError, flag, purse_by_id
from registry.purse.records import settle_by_records
from registry.purse_models import ChipPurse, PurseRecord, PurseSam, PurseScript

__all__ = ["OPS", "Script", "advising_sam", "choose_completion", "completion_payload", "limits_payload",
           "record_advice", "request_script", "reserving_sam", "script_applied", "scripts_for"]

log = logging.getLogger(__name__)

OPS = {"block": AdminOp.BLOCK, "unblock": AdminOp.UNBLOCK, "reset_pin_tries": AdminOp.RESET_PIN_TRIES,
       "set_limits": AdminOp.SET_LIMITS, "complete_pending": AdminOp.COMPLETE_PENDING}
# a completion, which the card may refuse (another SAM's figure), comes last: it holds back no other script
_ORDER = ("block", "unblock", "reset_pin_tries", "set_limits", "complete_pending")
_U32 = 2**32 - 1


@dataclass(frozen=True)
class Script:
    """One script to apply: the admin message and its MAC (no key)."""

    script_id: int
    op: AdminOp
    counter: int
    key_version: int
    message: bytes
    mac: bytes


def limits_payload(wallet: int, day: int, month: int) -> bytes:
    """SET_LIMITS: wallet (1), per-day limit (4), per-month limit (4); 0 is no limit."""
    if not 0 <= wallet < 8 or not 0 <= day <= _U32 or not 0 <= month <= _U32:
        raise PurseError("limits: wallet 0..7, limits 0..2**32-1", wallet=wallet)
    return struct.pack(">BII", wallet, day, month)


def _purse(s: Session, purse_id: bytes) -> ChipPurse:
    purse = purse_by_id(s, purse_id)
    if purse is None:
        raise PurseError("no such purse")
    return purse


def request_script(s: Session, purse_id: bytes, op: str, *, actor: str, now: dt.datetime,
                   payload: bytes = b"") -> PurseScript:
    """An operator's order for the chip: reset_pin_tries, or set_limits (payload from limits_payload)."""
    if op not in ("reset_pin_tries", "set_limits"):
        raise PurseError("an operator asks for reset_pin_tries or set_limits", op=op)
    if (op == "set_limits") != (len(payload) == 9):
        raise PurseError("set_limits takes a 9-byte payload, reset_pin_tries none", op=op)
    row = PurseScript(purse_id=_purse(s, purse_id).id, op=op, payload=payload.hex(), status="open",
                      actor=actor[:64], requested_at=now)
    s.add(row)
    s.flush()
    return row


def completion_payload(pending_counter: int, amount: int, sam_id: bytes) -> bytes:
    """COMPLETE_PENDING: pending counter (4), final amount (4), the reserving SAM's id (8); the card refuses
    it unless that SAM made its pending reservation and the amount is within the reserve."""
    return struct.pack(">II8s", pending_counter, amount, sam_id)


def advising_sam(s: Session, terminal: str, sam_id: bytes | None = None) -> PurseSam | None:
    """The terminal's active SAM (the one named, when given): the SAM an advice from it is recorded for."""
    query = select(PurseSam).where(PurseSam.terminal == terminal, PurseSam.status == "active")
    if sam_id is not None:
        query = query.where(PurseSam.sam_id == sam_id.hex())
    return s.scalars(query.order_by(PurseSam.created_at.desc(), PurseSam.sam_id)).first()


def reserving_sam(s: Session, purse: ChipPurse, counter: int) -> str | None:
    """The SAM that reserved at `counter`, once a record of that counter has counted (its terminal field)."""
    return s.scalars(select(PurseRecord.terminal).where(
        PurseRecord.counted_key == f"{purse.purse_id}:{counter}")).first()


def _same_sale(kept: str | None, told: str | None) -> bool:
    """Whether two advices of one SAM and counter are one sale's (one without a sale id: the same)."""
    return kept is None or told is None or kept == told


def record_advice(s: Session, purse_id: bytes, pending_counter: int, amount: int, *, terminal: str,
                  now: dt.datetime, sam_id: bytes | None = None,
                  sale_id: str | None = None) -> PurseScript | None:
    """A terminal's advice of the pump's final figure for a reservation left open on the card: recorded
    with the SAM id of the advising terminal's active SAM (and the terminal's sale id, when it gave one),
    it becomes the issuer's completion (COMPLETE_PENDING) at the card's next online contact. Idempotent per
    counter, SAM and sale. An advice from a terminal without an active SAM is refused (None; flagged
    foreign_advice). One completion per counter: a later advice from another SAM or sale is kept aside (op
    advice, flagged advice_conflict); it replaces the completion once a counted record shows its SAM
    reserved (registry.purse.refunds), or at a contact where the card's pending slot names its sale
    (choose_completion)."""
    purse = _purse(s, purse_id)
    if not 0 <= pending_counter <= _U32 or not 0 <= amount <= _U32:
        raise PurseError("a counter and an amount are 0..2**32-1")
    card = s.get(Card, purse.card_id)
    if card is not None and card.account_id is not None:
        ledger.lock_account(s, card.account_id)       # advices, records and refunds of a card take turns
    sam = advising_sam(s, terminal, sam_id)
    if sam is None:
        flag(s, "foreign_advice", now=now, purse_id=purse.purse_id,
             detail=f"counter {pending_counter}: terminal {terminal[:64]} has no active SAM")
        log.warning("purse advice refused: no active SAM", extra={"alarm": "purse_foreign_advice",
                                                                  "terminal": terminal[:64]})
        s.flush()
        return None
    rows = list(s.scalars(select(PurseScript).where(
        PurseScript.purse_id == purse.id, PurseScript.op.in_(("complete_pending", "advice")),
        PurseScript.pending_counter == pending_counter).order_by(PurseScript.id)))
    same = next((r for r in rows if r.sam_id == sam.sam_id and _same_sale(r.sale_id, sale_id)), None)
    held = next((r for r in rows if r.op == "complete_pending"), None)
    if same is not None:
        return same
    row = PurseScript(purse_id=purse.id, op="complete_pending", payload=completion_payload(
        pending_counter, amount, bytes.fromhex(sam.sam_id)).hex(), pending_counter=pending_counter,
        sam_id=sam.sam_id, sale_id=sale_id, status="open", actor=terminal[:64], requested_at=now)
    if held is not None:
        if reserving_sam(s, purse, pending_counter) == sam.sam_id and held.status != "applied":
            held.op, held.status = "advice", "cancelled"       # the reserving SAM's figure replaces it
            s.flush()
        else:
            row.op, row.status = "advice", "held"
            flag(s, "advice_conflict", now=now, purse_id=purse.purse_id,
                 detail=f"counter {pending_counter}: SAMs {held.sam_id} and {sam.sam_id}")
    s.add(row)
    s.flush()
    return row


def choose_completion(s: Session, purse: ChipPurse, pending: int | None, pending_sale: str | None) -> None:
    """The card reports its pending slot's counter and sale: the completion of that counter is the advice
    of that sale. When the one holding the completion is another sale's (a terminal that advised for a
    RESERVE the card never took, the card then reserving the same counter elsewhere), the advice of the
    card's sale takes its place and it is kept aside (op advice, held). The sale id is the terminal's word
    like the counter: it only chooses among advices already recorded from authenticated terminals' SAMs,
    and the card still refuses a completion from another SAM than the one that reserved, or above the
    reserve."""
    if pending is None or pending_sale is None:
        return
    rows = list(s.scalars(select(PurseScript).where(
        PurseScript.purse_id == purse.id, PurseScript.op.in_(("complete_pending", "advice")),
        PurseScript.pending_counter == pending).order_by(PurseScript.id)))
    held = next((r for r in rows if r.op == "complete_pending"), None)
    chosen = next((r for r in rows if r.sale_id == pending_sale and r.status in ("open", "held")), None)
    if held is None or chosen is None or chosen is held or held.status != "open":
        return
    held.op, held.status = "advice", "held"
    s.flush()                                # one completion per counter (ux_purse_scripts_pending)
    chosen.op, chosen.status = "complete_pending", "open"
    s.flush()


def _open(s: Session, purse: ChipPurse, op: str, now: dt.datetime) -> None:
    """Make sure one open script of `op` exists (block, unblock)."""
    if s.scalars(select(PurseScript.id).where(PurseScript.purse_id == purse.id, PurseScript.op == op,
                                              PurseScript.status == "open")).first() is None:
        s.add(PurseScript(purse_id=purse.id, op=op, payload="", status="open", actor="registry",
                          requested_at=now))
        s.flush()


def _due(s: Session, purse: ChipPurse, card: Card, now: dt.datetime, chip: str,
         pending: int | None, pending_sale: str | None = None) -> list[PurseScript]:
    """The open scripts to issue now. chip: the chip's status for this contact (the terminal's reading
    when it gave one, else the registry's); pending, pending_sale: the counter and sale id of the card's
    pending slot, if any (a completion recorded for another sale is not issued)."""
    stop = card.status in STOP_LIST
    if stop and chip != "blocked":
        _open(s, purse, "block", now)
    if card.status == "active" and chip == "blocked":
        _open(s, purse, "unblock", now)
    due = []
    scripts = select(PurseScript).where(PurseScript.purse_id == purse.id, PurseScript.status == "open",
                                        PurseScript.op.in_(_ORDER)).order_by(PurseScript.id)
    for row in s.scalars(scripts):
        stale = (row.op == "block" and not stop) or (row.op == "unblock" and stop)
        # not needed by this chip now (the reading only holds a script back; it never closes one)
        wait = (row.op == "block" and chip == "blocked") or (row.op == "unblock" and chip != "blocked")
        if row.op == "complete_pending":
            if s.scalars(select(PurseRecord.id).where(PurseRecord.counted_key == f"{purse.purse_id}:"
                                                      f"{row.pending_counter}")).first() is not None:
                stale = True                   # settled: the record of that counter has counted
            # only for the slot the card has, and the sale it keeps there
            wait = pending is None or pending != row.pending_counter or (
                None not in (pending_sale, row.sale_id) and pending_sale != row.sale_id)
        if stale:
            row.status = "cancelled"
        elif not wait and (not stop or row.op in ("block", "complete_pending")):
            due.append(row)
    return sorted(due, key=lambda r: (_ORDER.index(r.op), r.id))


def scripts_for(s: Session, issuer: IssuerKeys, purse_id: bytes, counter: int, *, now: dt.datetime,
                chip_blocked: bool | None = None, pending: int | None = None, pending_sale: str | None = None,
                terminal: str = "") -> list[Script]:
    """The scripts for this contact, in the order to apply them (see the module docstring). counter: the
    card's counter now; chip_blocked: the status the card showed, when the terminal read it; pending: the
    counter of the card's pending slot (None: it has none), pending_sale its sale id (the completion is
    that sale's advice: choose_completion). What the terminal says is not authenticated:
    it chooses what to issue now and never moves the registry's counter or chip status (counted records,
    an authenticated INITIALIZE LOAD and scripts reported applied do). terminal: the terminal asking,
    stored on each script issued (only it reports the script applied)."""
    purse = purse_by_id(s, purse_id)
    if purse is None or not 0 <= counter <= _U32:
        return []
    card = s.get(Card, purse.card_id)
    if card is None:
        return []
    if card.account_id is not None:
        ledger.lock_account(s, card.account_id)
    s.refresh(purse)
    s.refresh(card)
    purse.last_contact_at = now
    chip = purse.chip_status if chip_blocked is None else ("blocked" if chip_blocked else "active")
    settle_by_records(s, purse, now=now)
    choose_completion(s, purse, pending, pending_sale)
    scripts = []
    for i, row in enumerate(_due(s, purse, card, now, chip, pending, pending_sale)):
        if counter + i > _U32:
            break
        op = OPS[row.op]
        message = admin_message(purse_id, key_version=purse.admin_version, counter=counter + i, op=op,
                                payload=bytes.fromhex(row.payload))
        tag = mac(issuer.card_key(purse_id, Purpose.ADMIN, purse.admin_version), message)
        row.issued_counter, row.issued_at, row.issued_to = counter + i, now, terminal[:64]
        scripts.append(Script(row.id, op, counter + i, purse.admin_version, message, tag))
    s.flush()
    return scripts


def script_applied(s: Session, purse_id: bytes, script_id: int, *, now: dt.datetime,
                   terminal: str = "") -> bool:
    """The terminal reports the card applied a script (at the counter it was issued for); whether it was
    one of this purse's open scripts issued to this same terminal. A load granted at that counter can no
    longer apply: it is reversed (registry.purse.records.settle_by_records)."""
    purse = purse_by_id(s, purse_id)
    card = s.get(Card, purse.card_id) if purse is not None else None
    if card is not None and card.account_id is not None:
        ledger.lock_account(s, card.account_id)       # a reversal moves the account's value
    row = s.get(PurseScript, script_id)
    if purse is None or row is None or row.purse_id != purse.id or row.status != "open" \
            or row.issued_counter is None or row.issued_to != terminal[:64]:
        return False
    row.status = "applied"
    purse.last_counter = max(purse.last_counter, row.issued_counter + 1)
    purse.last_contact_at = now
    if row.op in ("block", "unblock"):
        purse.chip_status = "blocked" if row.op == "block" else "active"
    s.flush()
    settle_by_records(s, purse, now=now)
    return True
