"""Chip purse tables (SQLAlchemy 2; issue 18, docs/chip-wallet-registry.md): the issuer's sealed keys, the
purse on each registry card and its chip wallets, every purchase record received, the flags raised, loads,
SAMs and the issuer scripts operators asked for.

A chip wallet IS a registry Wallet (its shadow balance is that wallet's balance, the sum of its movements).
Ids (purse, SAM) are 8 bytes stored as 16 lower-case hex digits; a load id 16 bytes as 32. Money is cents,
volume centilitres, counters 32-bit unsigned. registry.models names every table of the registry.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry.modelbase import Base

__all__ = ["ChipPurse", "ChipWallet", "IssuerKey", "PurseFlag", "PurseLoad", "PurseRecord", "PurseSam",
           "PurseScript", "chip_shadows", "is_chip_shadow"]


class IssuerKey(Base):
    """One issuer master key (purpose auth record load admin sam, version 1..255) or the CA key (purpose
    ca), sealed under the registry KEK (registry.keys.seal_secret): never stored in clear."""

    __tablename__ = "purse_issuer_keys"
    purpose: Mapped[str] = mapped_column(String(8), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(8), default="active")        # active retired
    created_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None]


class ChipPurse(Base):
    """The purse application on one registry card: its id, the key versions it was personalised with, what
    the registry last learnt of its counter, and the chip's own status (blocked by a script or not)."""

    __tablename__ = "chip_purses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), unique=True)
    purse_id: Mapped[str] = mapped_column(String(16), unique=True)          # 8 bytes, hex
    auth_version: Mapped[int] = mapped_column(Integer, default=1)
    record_version: Mapped[int] = mapped_column(Integer, default=1)
    load_version: Mapped[int] = mapped_column(Integer, default=1)
    admin_version: Mapped[int] = mapped_column(Integer, default=1)
    chip_status: Mapped[str] = mapped_column(String(16), default="active")  # active blocked
    last_counter: Mapped[int] = mapped_column(BigInteger, default=0)        # highest counter known used
    last_record_counter: Mapped[int] = mapped_column(BigInteger, default=0)  # highest counted record's
    last_contact_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]


class ChipWallet(Base):
    """Wallet number 0..7 of a purse and the registry Wallet that is its shadow."""

    __tablename__ = "chip_wallets"
    __table_args__ = (UniqueConstraint("purse_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purse_id: Mapped[int] = mapped_column(ForeignKey("chip_purses.id"))
    number: Mapped[int] = mapped_column(Integer)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"), unique=True)


def chip_shadows() -> Select[tuple[int]]:
    """The ids of the wallets that shadow a chip wallet: a filter for everything that spends or moves a
    registry wallet (online authorization, offline sales, transfers, refunds), which must leave them alone:
    a shadow's value is on the chip, and only the card's records and the issuer's loads move it."""
    return select(ChipWallet.wallet_id)


def is_chip_shadow(s: Session, wallet_id: int | None) -> bool:
    return wallet_id is not None and s.scalar(
        select(ChipWallet.id).where(ChipWallet.wallet_id == wallet_id)) is not None


class PurseRecord(Base):
    """A signed record as received (each distinct 60 bytes once: `digest`), decoded where it decodes.
    `counted_key` ("<purse id>:<counter>", unique) is set on the one record that counted for its counter."""

    __tablename__ = "purse_records"
    __table_args__ = (Index("ix_purse_records_purse_counter", "purse_id", "counter"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)            # SHA-256 of raw
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(100))                        # mqtt:<terminal> bundle:<sha>
    purse_id: Mapped[str | None] = mapped_column(String(16))
    counter: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[int | None] = mapped_column(Integer)                       # contracts.purse_records.Kind
    wallet: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    unit: Mapped[int | None] = mapped_column(Integer)
    product: Mapped[int | None] = mapped_column(Integer)
    terminal: Mapped[str | None] = mapped_column(String(16))                # the SAM id the card saw
    time: Mapped[dt.datetime | None]
    previous_balance: Mapped[int | None] = mapped_column(BigInteger)
    new_balance: Mapped[int | None] = mapped_column(BigInteger)
    key_version: Mapped[int | None] = mapped_column(Integer)
    sam_id: Mapped[str | None] = mapped_column(String(16))
    sam_seq: Mapped[int | None] = mapped_column(BigInteger)
    sam_mac: Mapped[str | None] = mapped_column(String(32))
    flags: Mapped[str] = mapped_column(String(200), default="")            # comma-separated
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    counted_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    movement_key: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[dt.datetime]


class PurseFlag(Base):
    """What did not add up: one row per flag (malformed, bad_signature, replay, counter_gap, ...)."""

    __tablename__ = "purse_flags"
    __table_args__ = (Index("ix_purse_flags_purse", "purse_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purse_id: Mapped[str | None] = mapped_column(String(16))
    record_id: Mapped[int | None] = mapped_column(ForeignKey("purse_records.id"))
    flag: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[dt.datetime]


class PurseLoad(Base):
    """A load the issuer authorized: a top-up funded from `source_wallet_id` into the chip wallet's shadow
    under the movement key "purse-load:<load id>" (:out, :in), or a refund (purpose "refund", no source:
    the part of a recovered reserve the pump did not deliver, booked ":in" only, script_id its order).
    status authorized confirmed in_doubt reversed."""

    __tablename__ = "purse_loads"
    __table_args__ = (Index("ix_purse_loads_purse_counter", "purse_id", "counter"),
                      Index("ix_purse_loads_status", "status", "requested_at"))
    load_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purse_id: Mapped[int] = mapped_column(ForeignKey("chip_purses.id"))
    wallet: Mapped[int] = mapped_column(Integer)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    source_wallet_id: Mapped[int | None] = mapped_column(ForeignKey("wallets.id"))
    purpose: Mapped[str] = mapped_column(String(8), default="topup")        # topup refund
    script_id: Mapped[int | None] = mapped_column(ForeignKey("purse_scripts.id"))
    counter: Mapped[int] = mapped_column(BigInteger)                        # the card's, the MAC names it
    amount: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[int] = mapped_column(Integer)
    key_version: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(32))                            # the load MAC (not a key)
    terminal: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="authorized")
    requested_at: Mapped[dt.datetime]
    settled_at: Mapped[dt.datetime | None]
    record_id: Mapped[int | None] = mapped_column(ForeignKey("purse_records.id"))


class PurseSam(Base):
    """A terminal's SAM: its id, terminal, SAM key version and the last sequence number it forwarded."""

    __tablename__ = "purse_sams"
    sam_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    terminal: Mapped[str] = mapped_column(String(64), index=True)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")       # active revoked
    public_key: Mapped[str | None] = mapped_column(String(66))              # pinned at first enrolment
    created_at: Mapped[dt.datetime]


PENDING_ONCE = "op IN ('complete_pending', 'refund') AND pending_counter IS NOT NULL"


class PurseScript(Base):
    """An issuer script an operator (or the registry) asked for: op block, unblock, reset_pin_tries,
    set_limits or complete_pending, its payload (hex), open until the terminal reports it applied (or it is
    cancelled); op advice is another SAM's advice for a counter a complete_pending row holds (kept for the
    refund: registry.purse.refunds uses the reserving SAM's figure only); op refund is a load the registry
    owes the card (registry.purse.refunds), open until one of its grants is confirmed.
    issued_counter: the card counter the last issued MAC named (the card uses issued_counter + 1)."""

    __tablename__ = "purse_scripts"
    __table_args__ = (Index("ix_purse_scripts_purse_status", "purse_id", "status"),
                      # one completion and one refund per reservation, whatever two sessions race to do
                      Index("ux_purse_scripts_pending", "purse_id", "op", "pending_counter", unique=True,
                            sqlite_where=text(PENDING_ONCE), postgresql_where=text(PENDING_ONCE)))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purse_id: Mapped[int] = mapped_column(ForeignKey("chip_purses.id"))
    op: Mapped[str] = mapped_column(String(24))
    payload: Mapped[str] = mapped_column(String(140), default="")
    pending_counter: Mapped[int | None] = mapped_column(BigInteger)          # complete_pending: the reserve's
    sam_id: Mapped[str | None] = mapped_column(String(16))                  # an advice's: the advising SAM
    sale_id: Mapped[str | None] = mapped_column(String(36))                 # an advice's: the sale (UUID)
    status: Mapped[str] = mapped_column(String(16), default="open")         # open applied cancelled
    actor: Mapped[str] = mapped_column(String(64), default="")
    requested_at: Mapped[dt.datetime]
    issued_counter: Mapped[int | None] = mapped_column(BigInteger)
    issued_at: Mapped[dt.datetime | None]
    issued_to: Mapped[str] = mapped_column(String(64), default="")         # the terminal it was issued to
