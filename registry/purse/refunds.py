"""Credit back what a recovered reserve took beyond the pump's figure (docs/chip-wallets.md, "The
incremental purchase"; docs/chip-wallet-registry.md "Refunds").

A card pulled mid-purchase and completed offline at another terminal after the grace time is debited the
whole reserve (a RECOVERED record). When the registry also holds the first terminal's advice of what the
pump delivered (scripts.record_advice) from the SAM that reserved (the recovered record's terminal field;
another SAM's figure is never a basis) and it is less, the difference is owed to the card: a refund row
(PurseScript op "refund"), paid as a load the issuer MACs at the card's next online contact. The refund
grant is booked on the shadow at once (a "refund" movement, no source wallet: the value is what the
recovered debit took too much) and settles as any grant (registry.purse.records.settle_by_records): its LOAD
record confirms it and closes the refund; a card that never applied it has it reversed, and the next
contact issues it again. One grant at a time: while one is unsettled, no other is issued.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.purse_keys import Purpose, Unit, load_message, mac
from contracts.purse_records import Kind
from registry.fleet import ledger
from registry.models import Card
from registry.purse.grants import book_refund
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import chip_wallet, purse_by_id, wallet_unit
from registry.purse.records import settle_by_records
from registry.purse_models import ChipPurse, PurseLoad, PurseRecord, PurseScript

__all__ = ["Refund", "owed", "refunds_for"]

_U32 = 2**32 - 1


@dataclass(frozen=True)
class Refund:
    """A load to apply to the card (LOAD: key version, amount, load id, MAC) at `counter`."""

    load_id: bytes
    wallet: int
    amount: int
    unit: Unit
    counter: int
    key_version: int
    mac: bytes


def _figure(advice: PurseScript) -> int:
    _, figure, _ = struct.unpack(">II8s", bytes.fromhex(advice.payload))
    return int(figure)


def owed(s: Session, purse: ChipPurse, *, now: dt.datetime) -> list[PurseScript]:
    """Open refunds of the purse, after making those that recovered records and advices now show."""
    have = set(s.scalars(select(PurseScript.pending_counter).where(PurseScript.purse_id == purse.id,
                                                                   PurseScript.op == "refund")))
    advices = list(s.scalars(select(PurseScript).where(
        PurseScript.purse_id == purse.id, PurseScript.op.in_(("complete_pending", "advice")))
        .order_by(PurseScript.id)))
    for advice in advices:
        if advice.pending_counter is None or advice.pending_counter in have or advice.sam_id is None:
            continue
        record = s.scalars(select(PurseRecord).where(
            PurseRecord.counted_key == f"{purse.purse_id}:{advice.pending_counter}")).first()
        # only the reserving SAM's figure (the recovered record's terminal field) is a refund's basis; of
        # two sales it advised at one counter (a RESERVE the card never took, then one it took) the record
        # cannot tell which reserved: the higher figure
        figure = max(_figure(a) for a in advices if (a.pending_counter, a.sam_id) == (advice.pending_counter,
                                                                                       advice.sam_id))
        if record is None or record.kind != Kind.RECOVERED or record.amount is None \
                or record.wallet is None or record.terminal != advice.sam_id or record.amount <= figure:
            continue
        s.add(PurseScript(purse_id=purse.id, op="refund", pending_counter=advice.pending_counter,
                          payload=struct.pack(">BI", record.wallet, record.amount - figure).hex(),
                          status="open", actor="registry", requested_at=now))
        have.add(advice.pending_counter)
    s.flush()
    return list(s.scalars(select(PurseScript).where(PurseScript.purse_id == purse.id,
                                                    PurseScript.op == "refund", PurseScript.status == "open")
                          .order_by(PurseScript.id)))


def _load_id(purse: ChipPurse, row: PurseScript, counter: int) -> bytes:
    """One load id per refund and counter: the same contact asked again gets the same grant."""
    return hashlib.sha256(f"forecourt refund {purse.purse_id} {row.id} {counter}".encode()).digest()[:16]


def refunds_for(s: Session, issuer: IssuerKeys, purse_id: bytes, counter: int, *,
                now: dt.datetime) -> list[Refund]:
    """The refund loads to apply at this contact, the first at `counter` (the card's counter after the
    contact's scripts), the next at counter + 1, ... (the card advances its counter per load)."""
    purse = purse_by_id(s, purse_id)
    card = s.get(Card, purse.card_id) if purse is not None else None
    if purse is None or card is None or not 0 <= counter <= _U32:
        return []
    if card.account_id is not None:
        ledger.lock_account(s, card.account_id)
    s.refresh(purse)
    s.refresh(card)
    if card.status != "active" or purse.chip_status != "active":
        return []                               # a blocked card takes no load: paid once it is active
    settle_by_records(s, purse, now=now)
    out: list[Refund] = []
    for row in owed(s, purse, now=now):
        grants = list(s.scalars(select(PurseLoad).where(PurseLoad.script_id == row.id)))
        if any(g.status == "confirmed" for g in grants):
            row.status = "applied"
            continue
        live = [g for g in grants if g.status in ("authorized", "in_doubt")]
        at = counter + len(out)
        if live and any(g.counter != at for g in live):
            continue                            # an earlier grant may still be applied: wait for the log
        wallet_no, amount = struct.unpack(">BI", bytes.fromhex(row.payload))
        wallet = chip_wallet(s, purse, wallet_no)
        if wallet is None or at > _U32:
            continue
        unit, version = wallet_unit(wallet), purse.load_version
        load_id = _load_id(purse, row, at)
        # the same refund at the same counter again (a contact naming a counter the card has passed): the
        # grant already made, whatever its status (a reversed one the card applies after all is booked again)
        grant = live[0] if live else s.get(PurseLoad, load_id.hex())
        if grant is None:
            message = load_message(purse_id, key_version=version, wallet=wallet_no, counter=at, amount=amount,
                                   unit=unit, load_id=load_id)
            grant = PurseLoad(load_id=load_id.hex(), purse_id=purse.id, wallet=wallet_no, wallet_id=wallet.id,
                              source_wallet_id=None, purpose="refund", script_id=row.id, counter=at,
                              amount=amount, unit=int(unit), key_version=version,
                              mac=mac(issuer.card_key(purse_id, Purpose.LOAD, version), message).hex(),
                              terminal="", status="authorized", requested_at=now)
            s.add(grant)
            s.flush()
            book_refund(s, grant, now=now)
        out.append(Refund(bytes.fromhex(grant.load_id), wallet_no, amount, unit, at, grant.key_version,
                          bytes.fromhex(grant.mac)))
    s.flush()
    return out
