"""Settling a load grant: confirmed by the card's LOAD record, reversed when the card never applied it (its
funding moves back to the account's wallet), booked again when a LOAD record comes after a reversal."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from registry.fleet import ledger
from registry.models import Wallet
from registry.purse.purses import flag
from registry.purse_models import ChipPurse, PurseLoad, PurseRecord, PurseScript

__all__ = ["book_refund", "confirm_grant", "rebook_grant", "reverse_grant"]


def confirm_grant(s: Session, grant: PurseLoad, record: PurseRecord, *, now: dt.datetime) -> None:
    grant.status, grant.settled_at, grant.record_id = "confirmed", now, record.id
    if grant.script_id is not None:             # a refund: what the registry owed is paid
        owed = s.get(PurseScript, grant.script_id)
        if owed is not None:
            owed.status = "applied"


def _move(s: Session, grant: PurseLoad, prefix: str, sign: int, kind_out: str, kind_in: str,
          now: dt.datetime) -> None:
    """Book (sign 1) or take back (-1) a grant's value: out of its source wallet (a top-up) and into the
    chip wallet's shadow, under the grant's keys with `prefix`."""
    target = s.get(Wallet, grant.wallet_id)
    source = s.get(Wallet, grant.source_wallet_id) if grant.source_wallet_id is not None else None
    if target is None or (source is None and grant.purpose != "refund"):
        raise ledger.LedgerError("a load's wallet is gone", load=grant.load_id)
    key = f"purse-load:{grant.load_id}"
    if source is not None:
        ledger.post(s, source, kind_out, -sign * grant.amount, key=f"{prefix}{key}:out", at=now,
                    actor="purse")
    ledger.post(s, target, kind_in, sign * grant.amount, key=f"{prefix}{key}:in", at=now, actor="purse")


def book_refund(s: Session, grant: PurseLoad, *, now: dt.datetime) -> None:
    """A refund grant's credit on the shadow: the undelivered part of a recovered reserve comes back."""
    _move(s, grant, "", 1, "transfer_out", "refund", now)


def reverse_grant(s: Session, grant: PurseLoad, *, now: dt.datetime) -> None:
    """The card never applied this load: its funding goes back to the account's wallet."""
    _move(s, grant, ledger.REVERSAL, -1, "reversal", "reversal", now)
    grant.status, grant.settled_at = "reversed", now
    purse = s.get(ChipPurse, grant.purse_id)
    flag(s, "load_reversed", now=now, purse_id=purse.purse_id if purse else None,
         detail=f"load {grant.load_id} counter {grant.counter}")


def rebook_grant(s: Session, grant: PurseLoad, record: PurseRecord, *, now: dt.datetime) -> None:
    """A load reversed and yet applied by the card (its LOAD record came late): funded again."""
    _move(s, grant, "late:", 1, "transfer_out", "refund" if grant.purpose == "refund" else "transfer_in", now)
    confirm_grant(s, grant, record, now=now)
