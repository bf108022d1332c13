"""Fleet account tables (SQLAlchemy 2): customers, accounts, vehicles, drivers, wallets and their ledger of
movements, cards, limits, time windows, usage per period, and the audit of operators' changes (issue 14).

Volumes are centilitres, money cents. registry.models names every table of the registry.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from registry.modelbase import Base

__all__ = ["Account", "AuditEntry", "Card", "Customer", "Driver", "Limit", "Movement", "OfflineLimit",
           "TimeWindow", "Usage", "Vehicle", "Wallet"]


class Customer(Base):
    """A company or a person the network issues fleet cards to."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="company")     # company individual
    tax_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime | None]


class Account(Base):
    """What a customer's cards draw on: wallets (in the order `priority` gives) and limits. Periods and time
    windows are counted in the account's time zone (IANA name)."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")   # or closed
    # fleet, or (issue 15) loyalty (a points wallet), prepaid, gift (money wallets)
    kind: Mapped[str] = mapped_column(String(16), default="fleet", server_default="fleet")
    # prompts asked at the pump, comma-separated: odometer, vehicle, driver_id (the PIN is the card's)
    prompts: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # bumped by every authorization: the row lock that makes two pumps' authorizations take turns
    auth_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Vehicle(Base):
    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("account_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    number: Mapped[str] = mapped_column(String(16))               # registration or fleet number
    odometer_km: Mapped[int | None] = mapped_column(BigInteger)   # the last reading given at a pump
    odometer_at: Mapped[dt.datetime | None]


class Driver(Base):
    __tablename__ = "drivers"
    __table_args__ = (UniqueConstraint("account_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    code: Mapped[str] = mapped_column(String(16))                 # the driver id keyed in at the pump
    name: Mapped[str] = mapped_column(String(200), default="")


class Wallet(Base):
    """A balance in money (cents) or volume (centilitres). Prepaid: spends its balance; post-paid: may go
    down to -credit_limit. `balance` is the sum of the wallet's movements, kept with each one."""

    __tablename__ = "wallets"
    __table_args__ = (Index("ix_wallets_account", "account_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # comma-separated: 3-digit product codes, ranges of them ("001-099"), or the network's product codes
    allowed_products: Mapped[str] = mapped_column(String(500))
    monthly_limit_cl: Mapped[int | None]      # before r0007; a Limit row (account, month, volume) now
    name: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    unit: Mapped[str] = mapped_column(String(8), default="volume", server_default="volume")   # volume money
    mode: Mapped[str] = mapped_column(String(8), default="prepaid", server_default="prepaid")   # or postpaid
    credit_limit: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    priority: Mapped[int] = mapped_column(default=0, server_default="0")     # lower pays first
    # comma-separated station ids and "group:NAME"; "" any station
    stations: Mapped[str] = mapped_column(String(500), default="", server_default=text("''"))
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")   # or closed


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (Index("ix_cards_account", "account_id"), Index("ix_cards_status", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    masked: Mapped[str] = mapped_column(String(19))
    wallet_id: Mapped[int | None] = mapped_column(ForeignKey("wallets.id"))   # before r0007: its one wallet
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"))
    driver_id: Mapped[int | None] = mapped_column(ForeignKey("drivers.id"))
    expiry: Mapped[str] = mapped_column(String(4))                # YYMM
    pin_verifier: Mapped[str] = mapped_column(String(64))         # "" the card has no PIN
    pin_tries: Mapped[int] = mapped_column(default=0)
    # new active temp_blocked blocked lost stolen expired replaced withdrawn (registry.fleet.cards)
    status: Mapped[str] = mapped_column(String(16), default="active")
    medium: Mapped[str] = mapped_column(String(8), default="chip", server_default="chip")   # chip stripe tag
    # the card number (or tag UID) sealed under the KEK: what a terminal's stop-list entry is made from
    number_sealed: Mapped[str | None] = mapped_column(Text)
    replaced_by: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    status_changed_at: Mapped[dt.datetime | None]


class Limit(Base):
    """At most `maximum` (cents, centilitres or sales, by unit) per period, on a card or a whole account."""

    __tablename__ = "limits"
    __table_args__ = (UniqueConstraint("scope", "scope_id", "period", "unit"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))          # card account
    scope_id: Mapped[int]
    period: Mapped[str] = mapped_column(String(8))         # sale day week month year lifetime
    unit: Mapped[str] = mapped_column(String(8))           # money volume count
    maximum: Mapped[int] = mapped_column(BigInteger)


class TimeWindow(Base):
    """When a card (or every card of an account) may buy: weekdays (bit 0 Monday) and minutes of the day,
    start inclusive, end exclusive, in the account's time zone. No window: any time."""

    __tablename__ = "time_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))          # card account
    scope_id: Mapped[int] = mapped_column(index=True)
    weekdays: Mapped[int]                                  # bit mask, 127 every day
    start_minute: Mapped[int]
    end_minute: Mapped[int]


class Usage(Base):
    """What a card or an account used in one period (settled sales only), kept with each sale: a limit
    check reads one row per period instead of the period's sales. period_key e.g. D2026-12-01, W2026-49,
    M2026-12, Y2026, L (lifetime), in the account's time zone."""

    __tablename__ = "usage"
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    scope_id: Mapped[int] = mapped_column(primary_key=True)
    period_key: Mapped[str] = mapped_column(String(12), primary_key=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    volume_cl: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(default=0)


class Movement(Base):
    """One change of a wallet's balance, never updated or deleted. `key` makes it idempotent: the same
    top-up or sale booked twice is one movement."""

    __tablename__ = "movements"
    __table_args__ = (Index("ix_movements_wallet", "wallet_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    # topup sale refund reversal expiry transfer_in transfer_out correction
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)        # signed, in the wallet's unit
    balance_after: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime]
    sale_id: Mapped[str | None] = mapped_column(String(36), index=True)
    auth_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(200), default="")


class AuditEntry(Base):
    """Who changed what and why, for every operator command on customers, cards, wallets and limits."""

    __tablename__ = "audit"
    # what counts wrong voucher codes per terminal (registry.vouchers) reads by action, subject and time
    __table_args__ = (Index("ix_audit_action_subject_at", "action", "subject", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str] = mapped_column(String(64))       # e.g. card:12, wallet:3
    reason: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class OfflineLimit(Base):
    """What one sale of a card class may reach while the registry is away (the signed configuration's
    offline_limits): fleet (chip), fleet_stripe, fleet_tag."""

    __tablename__ = "offline_limits"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    volume_cl: Mapped[int] = mapped_column(BigInteger)
