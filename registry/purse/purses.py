"""Chip purses, their wallets, SAMs and flags in the registry (docs/chip-wallet-registry.md).

A purse belongs to one registry card; each of its chip wallets is a registry Wallet of the card's account
(the shadow). Nothing commits here: the caller does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.purse_keys import ID_LEN, Purpose, Unit
from registry.models import Card, Wallet
from registry.purse_models import ChipPurse, ChipWallet, PurseFlag, PurseSam

__all__ = ["FLAGS", "PurseError", "chip_wallet", "flag", "flags", "purse_by_id", "register_purse",
           "register_sam", "wallet_unit"]

# every flag the registry raises, in the order of its checks (docs/chip-wallet-registry.md)
FLAGS = ("malformed", "bad_signature", "retired_key", "unknown_purse", "replay", "counter_gap",
         "unknown_wallet", "unit_mismatch", "balance_mismatch", "stop_listed_offline", "unknown_load",
         "load_after_reversal", "sam_unknown", "sam_mac_bad", "sam_seq_gap", "load_reversed",
         "foreign_advice", "advice_conflict")
UNITS = {"money": Unit.MONEY, "volume": Unit.VOLUME}


class PurseError(ConfigError):
    """A purse, wallet or SAM the registry cannot register or find (the context names it)."""


def _hex_id(ident: bytes, what: str) -> str:
    if len(ident) != ID_LEN:
        raise PurseError(f"a {what} id is {ID_LEN} bytes", length=len(ident))
    return ident.hex()


def wallet_unit(wallet: Wallet) -> Unit:
    unit = UNITS.get(wallet.unit)
    if unit is None:
        raise PurseError("a chip wallet holds money or volume", wallet=wallet.id)
    return unit


def register_purse(s: Session, card_id: int, purse_id: bytes, wallets: Mapping[int, int], *,
                   now: dt.datetime, versions: int = 1,
                   key_versions: Mapping[Purpose, int] | None = None) -> ChipPurse:
    """The purse personalised on a registry card: wallet number -> registry wallet (of the card's account,
    money or volume); the key version of each purpose it holds (key_versions, else `versions` for all)."""
    card = s.get(Card, card_id)
    if card is None or card.account_id is None:
        raise PurseError("no such card on an account", card=card_id)
    v = {p: (key_versions or {}).get(p, versions) for p in Purpose}
    purse = ChipPurse(card_id=card_id, purse_id=_hex_id(purse_id, "purse"), auth_version=v[Purpose.AUTH],
                      record_version=v[Purpose.RECORD], load_version=v[Purpose.LOAD],
                      admin_version=v[Purpose.ADMIN], chip_status="active", last_counter=0,
                      last_record_counter=0, created_at=now)
    s.add(purse)
    s.flush()
    for number, wallet_id in sorted(wallets.items()):
        wallet = s.get(Wallet, wallet_id)
        if not 0 <= number < 8 or wallet is None or wallet.account_id != card.account_id:
            raise PurseError("a chip wallet is 0..7 and a wallet of the card's account", wallet=number)
        wallet_unit(wallet)
        s.add(ChipWallet(purse_id=purse.id, number=number, wallet_id=wallet_id))
    s.flush()
    return purse


def register_sam(s: Session, sam_id: bytes, terminal: str, *, now: dt.datetime,
                 key_version: int = 1) -> PurseSam:
    """A terminal's SAM, as provisioning enrolled it (its SAM key is derived from the SAM master)."""
    sam = PurseSam(sam_id=_hex_id(sam_id, "SAM"), terminal=terminal, key_version=key_version, last_seq=0,
                   status="active", created_at=now)
    s.add(sam)
    s.flush()
    return sam


def purse_by_id(s: Session, purse_id: bytes | str) -> ChipPurse | None:
    key = purse_id.hex() if isinstance(purse_id, bytes) else purse_id
    return s.scalars(select(ChipPurse).where(ChipPurse.purse_id == key)
                     .execution_options(populate_existing=True)).one_or_none()


def chip_wallet(s: Session, purse: ChipPurse, number: int) -> Wallet | None:
    """The registry wallet that shadows chip wallet `number` of the purse."""
    return s.scalars(select(Wallet).join(ChipWallet, ChipWallet.wallet_id == Wallet.id)
                     .where(ChipWallet.purse_id == purse.id, ChipWallet.number == number)).one_or_none()


def flag(s: Session, name: str, *, now: dt.datetime, purse_id: str | None = None,
         record_id: int | None = None, detail: str = "") -> PurseFlag:
    """Store one flag (name from FLAGS)."""
    if name not in FLAGS:
        raise PurseError("unknown purse flag", flag=name)
    row = PurseFlag(purse_id=purse_id, record_id=record_id, flag=name, detail=detail[:200], at=now)
    s.add(row)
    return row


def flags(s: Session, purse_id: bytes | str | None = None) -> list[PurseFlag]:
    """The flags raised, oldest first; of one purse when given."""
    query = select(PurseFlag).order_by(PurseFlag.id)
    if purse_id is not None:
        key = purse_id.hex() if isinstance(purse_id, bytes) else purse_id
        query = query.where(PurseFlag.purse_id == key)
    return list(s.scalars(query))
