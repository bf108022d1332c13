"""Loads (top-ups) of a chip wallet, online only (docs/chip-wallets.md "Load", docs/chip-wallet-registry.md).

authorize_load checks the card's INITIALIZE LOAD MAC (AUTH key), that card and purse are active, that the
counter is not behind what the registry saw, that the wallet exists and that an open top-up order names
this load (registry.purse.topups: a terminal loads only what was ordered); then it FUNDS the load: a ledger
transfer from the card account's own server-side wallet of the same unit into the chip wallet's shadow
(value is never made here: an account without the funds is refused), booked under the load id, and
answers the load MAC (LOAD key) for that one counter. The same request again returns the same grant.

A grant is confirmed by the card's LOAD record (the counter after the grant's). One not confirmed within
CONFIRM_WINDOW is in_doubt; the card's log settles it at its next contact (the record at the grant's
counter + 1 is the load: confirmed; anything else, or an issuer script the card applied at the grant's
counter: the card never applied it, reversed), or, after
DEADLINE, once a counted record later than the grant's counter shows its MAC can no longer apply
(settle_loads; until then it stays in doubt, funds held). A LOAD record for a grant already reversed
books it again (the card has the value) and is flagged load_after_reversal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ForecourtError
from contracts.purse_keys import (
    ID_LEN,
    MAC_LEN,
    Purpose,
    Unit,
    init_load_message,
    load_message,
    mac,
    verify_mac,
)
from registry.fleet import ledger
from registry.models import Card, Wallet
from registry.purse.grants import reverse_grant
from registry.purse.issuer import IssuerKeys, PurseKeyMissing
from registry.purse.purses import chip_wallet, purse_by_id, wallet_unit
from registry.purse.records import IngestReport, Item, ingest, settle_by_records
from registry.purse.topups import order_for
from registry.purse_models import ChipPurse, ChipWallet, PurseLoad, PurseRecord

__all__ = ["CONFIRM_WINDOW", "DEADLINE", "LoadGrant", "LoadRequest", "authorize_load", "confirm_load",
           "settle_loads"]

CONFIRM_WINDOW = dt.timedelta(minutes=15)   # a terminal confirms a load within a card session
DEADLINE = dt.timedelta(days=7)             # an in-doubt grant the card's log has not settled is reversed
_U32 = 2**32 - 1


@dataclass(frozen=True)
class LoadRequest:
    """What the terminal forwards: the card's INITIALIZE LOAD answer and the load id it chose."""

    load_id: bytes          # 16 bytes, the idempotency key
    purse_id: bytes
    wallet: int
    counter: int
    amount: int
    unit: Unit
    balance: int
    key_version: int        # the card's AUTH key version
    mac: bytes              # the card's MAC over init_load_message
    terminal: str = ""


@dataclass(frozen=True)
class LoadGrant:
    load_id: bytes
    granted: bool
    reason: str = ""        # why refused: unknown_purse bad_mac card_blocked counter_behind ...
    mac: bytes = b""        # the load MAC, when granted
    key_version: int = 0    # the LOAD key version the MAC is under
    counter: int = 0


class _Refused(ForecourtError):
    def __init__(self, reason: str) -> None:
        super().__init__("load refused", reason=reason)
        self.reason = reason


def _grant(row: PurseLoad) -> LoadGrant:
    return LoadGrant(bytes.fromhex(row.load_id), True, mac=bytes.fromhex(row.mac),
                     key_version=row.key_version, counter=row.counter)


def _source(s: Session, account_id: int, target: Wallet, amount: int, now: dt.datetime) -> Wallet:
    """The account's own wallet of the target's unit that pays the load: active, not a chip wallet, with
    the amount in its own funds (balance less holds; a credit line is not money to load on a card)."""
    chip = select(ChipWallet.wallet_id)
    for wallet in s.scalars(select(Wallet).where(Wallet.account_id == account_id, Wallet.unit == target.unit,
                                                 Wallet.status == "active", Wallet.id.not_in(chip))
                            .order_by(Wallet.priority, Wallet.id)):
        s.refresh(wallet, ["balance"])
        if wallet.balance - ledger.open_holds(s, wallet.id, now) >= amount:
            return wallet
    raise _Refused("insufficient_funds")


def _check(s: Session, issuer: IssuerKeys, r: LoadRequest, now: dt.datetime) -> tuple[ChipPurse, Wallet, int]:
    if len(r.purse_id) != ID_LEN or len(r.mac) != MAC_LEN or not 0 < r.amount <= _U32 \
            or not 0 <= r.counter < _U32 or not 0 <= r.balance <= _U32 - r.amount or not 0 <= r.wallet < 8:
        raise _Refused("malformed")
    purse = purse_by_id(s, r.purse_id)
    if purse is None:
        raise _Refused("unknown_purse")
    try:
        key = issuer.card_key(r.purse_id, Purpose.AUTH, r.key_version)
        message = init_load_message(r.purse_id, key_version=r.key_version, wallet=r.wallet, counter=r.counter,
                                    amount=r.amount, unit=r.unit, balance=r.balance)
    except PurseKeyMissing:
        raise _Refused("bad_mac") from None
    if not verify_mac(key, message, r.mac) or issuer.retired(Purpose.AUTH, r.key_version):
        raise _Refused("bad_mac")
    card = s.get(Card, purse.card_id)
    if card is None or card.account_id is None:
        raise _Refused("unknown_purse")
    account_id: int = card.account_id
    ledger.lock_account(s, card.account_id)
    s.refresh(purse)
    s.refresh(card)
    if card.status != "active" or purse.chip_status != "active":
        raise _Refused("card_blocked")
    if r.counter < purse.last_counter:
        raise _Refused("counter_behind")
    wallet = chip_wallet(s, purse, r.wallet)
    if wallet is None or wallet.status != "active" or wallet_unit(wallet) is not r.unit:
        raise _Refused("unknown_wallet")
    return purse, wallet, account_id


def _again(s: Session, found: PurseLoad, r: LoadRequest) -> LoadGrant:
    """The same load id asked again: the first grant when it is the same load, else refused."""
    purse = purse_by_id(s, r.purse_id)
    same = purse is not None and (found.purse_id, found.wallet, found.counter, found.amount) == (
        purse.id, r.wallet, r.counter, r.amount)
    return _grant(found) if same else LoadGrant(r.load_id, False, "load_id_reused")


def authorize_load(s: Session, issuer: IssuerKeys, r: LoadRequest, *, now: dt.datetime) -> LoadGrant:
    """Grant (and fund) a load, or refuse it with a reason; the caller commits. now: naive UTC."""
    found = s.get(PurseLoad, r.load_id.hex()) if len(r.load_id) == 16 else None
    if len(r.load_id) != 16:
        return LoadGrant(r.load_id, False, "malformed")
    if found is not None:
        return _again(s, found, r)
    try:
        purse, wallet, account_id = _check(s, issuer, r, now)
        # under the account's lock now: a session that booked this load id meanwhile has committed it
        found = s.scalars(select(PurseLoad).where(PurseLoad.load_id == r.load_id.hex())
                          .execution_options(populate_existing=True)).one_or_none()
        if found is not None:
            return _again(s, found, r)
        order = order_for(s, purse, r.load_id, wallet=r.wallet, amount=r.amount, counter=r.counter)
        if order is None:
            raise _Refused("no_order")      # a terminal loads only what the registry was asked to
        source = _source(s, account_id, wallet, r.amount, now)
    except _Refused as exc:
        return LoadGrant(r.load_id, False, exc.reason)
    version = purse.load_version
    message = load_message(r.purse_id, key_version=version, wallet=r.wallet, counter=r.counter,
                           amount=r.amount, unit=r.unit, load_id=r.load_id)
    tag = mac(issuer.card_key(r.purse_id, Purpose.LOAD, version), message)
    ledger.transfer(s, source, wallet, r.amount, key=f"purse-load:{r.load_id.hex()}", at=now, actor="purse",
                    reason=f"load of chip wallet {r.wallet}")
    row = PurseLoad(load_id=r.load_id.hex(), purse_id=purse.id, wallet=r.wallet, wallet_id=wallet.id,
                    source_wallet_id=source.id, purpose="topup", script_id=order.id, counter=r.counter,
                    amount=r.amount,
                    unit=int(r.unit), key_version=version, mac=tag.hex(), terminal=r.terminal[:64],
                    status="authorized", requested_at=now)
    s.add(row)
    purse.last_counter = max(purse.last_counter, r.counter)
    purse.last_contact_at = now
    s.flush()
    settle_by_records(s, purse, now=now)
    return _grant(row)


def confirm_load(s: Session, issuer: IssuerKeys, load_id: bytes, record: bytes, *, source: str,
                 now: dt.datetime) -> tuple[str, IngestReport]:
    """The terminal's confirmation: the card's LOAD record goes through ingest; the grant's status."""
    report = ingest(s, issuer, [Item(record)], source=source, now=now)
    grant = s.get(PurseLoad, load_id.hex())
    return (grant.status if grant is not None else "unknown"), report


def _moved_past(s: Session, purse: ChipPurse | None, grant: PurseLoad) -> bool:
    """Whether a counted record shows the card's counter past the grant's: its MAC can no longer apply."""
    return purse is not None and s.scalars(select(PurseRecord.id).where(
        PurseRecord.purse_id == purse.purse_id, PurseRecord.counted.is_(True),
        PurseRecord.counter >= grant.counter + 1)).first() is not None


def settle_loads(s: Session, *, now: dt.datetime, window: dt.timedelta = CONFIRM_WINDOW,
                 deadline: dt.timedelta = DEADLINE) -> tuple[int, int]:
    """The sweep: grants unconfirmed past `window` become in_doubt; an in_doubt one past `deadline` is
    reversed only once a counted record shows the card's counter past the grant's (its MAC can no longer
    apply; the card's log can still bring a LOAD record: it books the load again). Until then it stays in
    doubt, its funds held on the shadow: the MAC may still be applied. (in doubt, reversed)"""
    doubtful = reversed_ = 0
    for grant in s.scalars(select(PurseLoad).where(PurseLoad.status.in_(("authorized", "in_doubt")))
                           .order_by(PurseLoad.requested_at)):
        purse = s.get(ChipPurse, grant.purse_id)
        if purse is not None:
            settle_by_records(s, purse, now=now)
        if grant.status == "authorized" and grant.requested_at + window <= now:
            grant.status, doubtful = "in_doubt", doubtful + 1
        if grant.status == "in_doubt" and grant.requested_at + deadline <= now \
                and _moved_past(s, purse, grant):
            reverse_grant(s, grant, now=now)
            reversed_ += 1
    s.flush()
    return doubtful, reversed_
