"""Loyalty, prepaid and gift cards, vouchers and attendants (SQLAlchemy 2; issue 15).

Points are a wallet in the unit "points" on a loyalty account (accounts.kind "loyalty"), booked in the same
movements table as fleet wallets. Each award is one movement with a PointAward row beside it (station,
product group, what is left of it); each spend, expiry or pool transfer is linked to the awards it uses by
PointAllocation rows, oldest award first. Money is cents, volume centilitres. "milli" columns are
thousandths (of a point, of a cent). registry.models names every table of the registry.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.modelbase import Base

__all__ = ["Attendant", "EarnRule", "LoyaltyFlag", "LoyaltyLink", "LoyaltyMember", "LoyaltySetting",
           "LoyaltySettlement", "PointAllocation", "PointAward", "PointConversion", "Promotion", "Reward",
           "RewardOrder", "RewardStock", "ShiftReport", "StationPointValue", "Tier", "TopupBonus", "Voucher"]


class LoyaltyMember(Base):
    """What a loyalty account has besides its points wallet: its tier, when its cards were issued and first
    used (the first-use bonus), and the account its points are pooled into (then it neither shows nor
    redeems them)."""

    __tablename__ = "loyalty_members"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16), default="base", server_default="base")
    tier_since: Mapped[dt.date | None] = mapped_column(Date)
    issued_on: Mapped[dt.date] = mapped_column(Date)
    first_used_at: Mapped[dt.datetime | None]
    pool_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class LoyaltyLink(Base):
    """A fleet or bank card that earns on a loyalty account, by its keyed token (never its number)."""

    __tablename__ = "loyalty_links"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    masked: Mapped[str] = mapped_column(String(19))
    created_at: Mapped[dt.datetime]


class LoyaltySetting(Base):
    """One programme setting (registry.loyalty.settings names them and their defaults)."""

    __tablename__ = "loyalty_settings"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class EarnRule(Base):
    """Points per litre (basis volume) or per currency unit (basis money) for a product: a product code,
    "group:NAME" (products.group) or "*"; the most specific rule in force applies."""

    __tablename__ = "earn_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(32))
    basis: Mapped[str] = mapped_column(String(8))                  # volume money
    milli_points: Mapped[int] = mapped_column(BigInteger)          # per litre or per currency unit
    starts_on: Mapped[dt.date | None] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)          # inclusive


class Promotion(Base):
    """A promotion by date window, product and station, applied in `position` order; `stop` ends the list
    when it applies. multiplier_pct scales the points so far; bonus_points adds to them."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]
    product: Mapped[str] = mapped_column(String(32), default="*", server_default="*")
    stations: Mapped[str] = mapped_column(String(500), default="", server_default=text("''"))  # "" any
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)                 # inclusive
    multiplier_pct: Mapped[int] = mapped_column(default=100, server_default="100")
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stop: Mapped[bool] = mapped_column(default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")   # or ended


class Tier(Base):
    """A tier: its multiplier and the spend over the rolling period that earns it (rank 0 is the base)."""

    __tablename__ = "tiers"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    rank: Mapped[int] = mapped_column(unique=True)
    multiplier_pct: Mapped[int]
    min_spend_cents: Mapped[int] = mapped_column(BigInteger)


class PointAward(Base):
    """The points one movement granted: where, for which product group, and how many are not yet used."""

    __tablename__ = "point_awards"
    __table_args__ = (Index("ix_point_awards_wallet_open", "wallet_id", "remaining", "movement_id"),
                      Index("ix_point_awards_station", "station_id", "earned_at"))
    movement_id: Mapped[int] = mapped_column(ForeignKey("movements.id"), primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    station_id: Mapped[str | None] = mapped_column(String(64))
    product_group: Mapped[str] = mapped_column(String(16), default="", server_default=text("''"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[dt.datetime]
    # the settlement line that paid the station for it: an award synced after its period was settled is
    # paid by the next settlement, never twice, never lost
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_settlements.id"), index=True)


class PointAllocation(Base):
    """Points of one award used by one spend, expiry or transfer movement."""

    __tablename__ = "point_allocations"
    __table_args__ = (UniqueConstraint("spend_id", "award_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spend_id: Mapped[int] = mapped_column(ForeignKey("movements.id"), index=True)
    award_id: Mapped[int] = mapped_column(ForeignKey("point_awards.movement_id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)


class Reward(Base):
    """A catalogue entry: goods handed over at the station, for a price in points."""

    __tablename__ = "rewards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")   # withdrawn


class RewardStock(Base):
    __tablename__ = "reward_stock"
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), primary_key=True)
    quantity: Mapped[int]


class RewardOrder(Base):
    """A reward redeemed: handed over at once, or ordered (pending until the weekly list takes it)."""

    __tablename__ = "reward_orders"
    __table_args__ = (Index("ix_reward_orders_status", "status", "station_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    movement_id: Mapped[int] = mapped_column(ForeignKey("movements.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))        # handed_over pending listed delivered returned
    batch: Mapped[str | None] = mapped_column(String(16))  # the weekly list that took it, e.g. W2026-49
    attendant_id: Mapped[str] = mapped_column(String(16), default="", server_default=text("''"))
    created_at: Mapped[dt.datetime]


class PointConversion(Base):
    """Points turned into wallet credit: from min_points up, each point is worth milli_cents."""

    __tablename__ = "point_conversions"
    min_points: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    milli_cents: Mapped[int]


class StationPointValue(Base):
    """What the network pays a station for each point it granted, by product group, from a date on."""

    __tablename__ = "station_point_values"
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), primary_key=True)
    product_group: Mapped[str] = mapped_column(String(16), primary_key=True)
    valid_from: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    milli_cents: Mapped[int]


class LoyaltySettlement(Base):
    """One line of a station's settlement for a period; written once, re-printed as written."""

    __tablename__ = "loyalty_settlements"
    # one line per product group and point value in force (a value changed mid-period makes two lines)
    __table_args__ = (UniqueConstraint("station_id", "period_start", "period_end", "product_group",
                                       "milli_cents"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)      # inclusive
    product_group: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    milli_cents: Mapped[int]
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(64))


class LoyaltyFlag(Base):
    """Something for an operator to look at: an attendant crediting their own card, a daily cap reached."""

    __tablename__ = "loyalty_flags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))          # own_card daily_cap
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    sale_id: Mapped[str | None] = mapped_column(String(36))
    attendant_id: Mapped[str] = mapped_column(String(16), default="", server_default=text("''"))
    at: Mapped[dt.datetime]
    detail: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))


class TopupBonus(Base):
    """A top-up of at least min_cents on a prepaid or gift card gets bonus_pct percent and bonus_cents on
    top, within its dates (pay 100, get 110)."""

    __tablename__ = "topup_bonuses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_kind: Mapped[str] = mapped_column(String(16))  # prepaid gift
    min_cents: Mapped[int] = mapped_column(BigInteger)
    bonus_pct: Mapped[int] = mapped_column(default=0, server_default="0")
    bonus_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    starts_on: Mapped[dt.date | None] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)


class Voucher(Base):
    """A paper voucher for a volume of a product. Only a keyed digest of its code is kept; it is redeemed
    once network-wide (the conditional update of `status` decides between two terminals)."""

    __tablename__ = "vouchers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    code_hint: Mapped[str] = mapped_column(String(4))      # its last four characters, for operators
    product: Mapped[str] = mapped_column(ForeignKey("products.code"))
    volume_cl: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))        # issued redeemed void
    batch: Mapped[str] = mapped_column(String(32), default="", server_default=text("''"))
    issued_at: Mapped[dt.datetime]
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    redeemed_at: Mapped[dt.datetime | None]
    terminal: Mapped[str | None] = mapped_column(String(64))
    auth_id: Mapped[str | None] = mapped_column(String(36))
    # the synced sale that dispensed on it: from then on it is spent and cannot be released
    sale_id: Mapped[str | None] = mapped_column(String(36))


class Attendant(Base):
    """A station attendant: signs in at a terminal with their card and PIN. Only a PIN verifier is kept
    (contracts.signing.pin_verifier); failed_tries in a row past the limit lock them out."""

    __tablename__ = "attendants"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    card_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    # the card number sealed under the KEK: each terminal's configuration entry is made from it
    card_sealed: Mapped[str | None] = mapped_column(Text)
    pin_verifier: Mapped[str] = mapped_column(String(200))
    failed_tries: Mapped[int] = mapped_column(default=0, server_default="0")
    # active locked withdrawn
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    stations: Mapped[str] = mapped_column(String(500), default="", server_default=text("''"))  # "" any
    role: Mapped[str] = mapped_column(String(16), default="attendant", server_default="attendant")
    created_at: Mapped[dt.datetime]


class ShiftReport(Base):
    """A terminal's Z report as it sent it: one per shift, its totals kept as sent (JSON)."""

    __tablename__ = "shift_reports"
    __table_args__ = (UniqueConstraint("terminal", "shift"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    terminal: Mapped[str] = mapped_column(String(64))
    shift: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[dt.datetime]
    closed_at: Mapped[dt.datetime]
    attendant_id: Mapped[str] = mapped_column(String(16))
    totals: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime]
