"""Top-ups of a chip wallet ordered centrally and loaded at the card's next online contact.

An operator or the fleet customer orders an amount onto a chip wallet (order_topup): money or litres the
card's account holds moves onto the chip. The order waits (a PurseScript of op "topup") until a terminal
that can reach the registry has the card: the contact's answer offers it (offers), the terminal has the card
sign an INITIALIZE LOAD for exactly that wallet and amount, and registry.purse.loads.authorize_load funds it
from the account and answers the load MAC. A terminal can load only what an order names (order_for), so
the registry, not the terminal, decides where value goes; without the registry nothing is loaded and the
order simply waits (docs/chip-wallets.md, "Load"). The order is done once the card's LOAD record counted.

The load id of an order is fixed per order and card counter: asked twice at one counter it is the same
grant; a grant the card never applied (reversed) is offered again under the next counter's id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.purse.purses import PurseError, chip_wallet, purse_by_id
from registry.purse_models import ChipPurse, PurseLoad, PurseScript

__all__ = ["Offer", "load_id_for", "offers", "order_for", "order_topup", "orders"]

_U32 = 2**32 - 1


@dataclass(frozen=True)
class Offer:
    order: int
    load_id: bytes
    wallet: int
    amount: int


def order_topup(s: Session, purse_id: bytes, wallet: int, amount: int, *, actor: str,
                now: dt.datetime) -> PurseScript:
    """Order `amount` (the wallet's unit) onto chip wallet `wallet`; the caller commits."""
    purse = purse_by_id(s, purse_id)
    if purse is None:
        raise PurseError("no such purse")
    if not 0 < amount <= _U32 or chip_wallet(s, purse, wallet) is None:
        raise PurseError("a top-up names a chip wallet of the card and 1..2**32-1", wallet=wallet)
    row = PurseScript(purse_id=purse.id, op="topup", payload=struct.pack(">BI", wallet, amount).hex(),
                      status="open", actor=actor[:64], requested_at=now)
    s.add(row)
    s.flush()
    return row


def load_id_for(purse: ChipPurse, order: PurseScript, counter: int) -> bytes:
    return hashlib.sha256(f"forecourt topup {purse.purse_id} {order.id} {counter}".encode()).digest()[:16]


def _terms(order: PurseScript) -> tuple[int, int]:
    wallet, amount = struct.unpack(">BI", bytes.fromhex(order.payload))
    return int(wallet), int(amount)


def orders(s: Session, purse: ChipPurse) -> list[PurseScript]:
    """The purse's open top-up orders, oldest first; one whose load the card applied is closed here."""
    out = []
    open_orders = select(PurseScript).where(PurseScript.purse_id == purse.id, PurseScript.op == "topup",
                                            PurseScript.status == "open").order_by(PurseScript.id)
    for row in s.scalars(open_orders):
        grants = list(s.scalars(select(PurseLoad).where(PurseLoad.script_id == row.id)))
        if any(g.status == "confirmed" for g in grants):
            row.status = "applied"
        elif not any(g.status in ("authorized", "in_doubt") for g in grants):
            out.append(row)
    s.flush()
    return out


def offers(s: Session, purse_id: bytes, counter: int) -> list[Offer]:
    """What the terminal may load at this contact: the first at `counter` (the card's counter after the
    contact's scripts and refunds), the next at counter + 1, ... An order with a grant still unsettled is
    not offered again until the card's log settles it."""
    purse = purse_by_id(s, purse_id)
    if purse is None:
        return []
    out: list[Offer] = []
    for row in orders(s, purse):
        wallet, amount = _terms(row)
        at = counter + len(out)
        if at > _U32:
            break
        out.append(Offer(row.id, load_id_for(purse, row, at), wallet, amount))
    return out


def order_for(s: Session, purse: ChipPurse, load_id: bytes, *, wallet: int, amount: int,
              counter: int) -> PurseScript | None:
    """The open order a load request answers: the one whose load id at this counter it names, for its
    wallet and amount exactly; None: no order asked for this load."""
    for row in orders(s, purse):
        if load_id_for(purse, row, counter) == load_id and _terms(row) == (wallet, amount):
            return row
    return None
