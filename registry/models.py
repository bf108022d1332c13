"""Registry tables (SQLAlchemy 2). Cards are keyed by a keyed hash of their number; PINs by a keyed verifier.
The fleet accounts' tables live in registry.fleet_models and are named here too.

Volumes are centilitres, money cents, unit prices thousandths per litre.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.fleet_models import (
    Account,
    AuditEntry,
    Card,
    Customer,
    Driver,
    Limit,
    Movement,
    OfflineLimit,
    TimeWindow,
    Usage,
    Vehicle,
    Wallet,
)
from registry.loyalty_models import (
    Attendant,
    EarnRule,
    LoyaltyFlag,
    LoyaltyLink,
    LoyaltyMember,
    LoyaltySetting,
    LoyaltySettlement,
    PointAllocation,
    PointAward,
    PointConversion,
    Promotion,
    Reward,
    RewardOrder,
    RewardStock,
    ShiftReport,
    StationPointValue,
    Tier,
    TopupBonus,
    Voucher,
)
from registry.modelbase import Base
from registry.purse_models import (
    ChipPurse,
    ChipWallet,
    IssuerKey,
    PurseFlag,
    PurseLoad,
    PurseRecord,
    PurseSam,
    PurseScript,
)
from registry.report_models import SalesDaily, SalesDailyAccount, SalesRollup, SalesRollupZone
from registry.web_models import PriceChange, WebSession, WebUser

__all__ = [
    "Account", "Attendant", "AuditEntry", "AuthAllowance", "Authorization", "Base", "Card", "ChipPurse",
    "ChipWallet", "ConfigRelease", "Customer", "Device", "DeviceCommand", "DeviceEvent", "Driver", "EarnRule",
    "EnrollmentRequest", "EnrollmentToken", "ExpectedDevice", "Hold", "IssuerKey", "Limit", "LoyaltyFlag",
    "LoyaltyLink", "LoyaltyMember", "LoyaltySetting", "LoyaltySettlement", "Movement", "Nozzle",
    "OfflineLimit", "PointAllocation", "PointAward", "PointConversion", "PriceChange", "Product", "Promotion",
    "PurseFlag", "PurseLoad", "PurseRecord", "PurseSam", "PurseScript", "Reward", "RewardOrder",
    "RewardStock", "Rollout", "RolloutDevice", "SaleConflict", "SalesDaily", "SalesDailyAccount",
    "SalesRollup", "SalesRollupZone", "ShiftReport", "SoftwareRelease", "Station", "StationGroupMember",
    "StationPointValue", "Tier", "TimeWindow", "TopupBonus", "Transaction", "Usage", "Vehicle", "Voucher",
    "Wallet", "WebSession", "WebUser",
]


class Station(Base):
    __tablename__ = "stations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    # the station's wall clock (IANA name): voucher expiry, shift and settlement days
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")


class StationGroupMember(Base):
    """A station in a named group (a region, a brand): wallets may be restricted to groups."""

    __tablename__ = "station_group_members"
    __table_args__ = (Index("ix_station_group_members_station", "station_id"),)
    group: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), primary_key=True)


class Product(Base):
    __tablename__ = "products"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # the 3-digit Conexxus / ANSI X9.104-2 product code wallets are restricted by (registry.fleet.rules)
    code3: Mapped[str | None] = mapped_column(String(3))
    # what loyalty rules, purpose-restricted credit and settlements group products by: fuel, shop...
    group: Mapped[str] = mapped_column(String(16), default="fuel", server_default="fuel")


class Nozzle(Base):
    __tablename__ = "nozzles"
    __table_args__ = (UniqueConstraint("station_id", "pump", "nozzle"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    pump: Mapped[int]
    nozzle: Mapped[int]
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"))
    price_milli: Mapped[int]


class Device(Base):
    """A terminal. Its desired state (what the registry wants it to run) and its reported state (what its
    heartbeat says it runs) are kept apart, as a device shadow does."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_serial", "serial", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    # AES PIN-encryption key shared with the terminal's PIN pad (an HSM holds it in production).
    pin_key_hex: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")  # pending active revoked decommissioned
    serial: Mapped[str | None] = mapped_column(String(64))
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64))    # SHA-256 of the DER certificate, hex
    cert_expires_at: Mapped[dt.datetime | None]
    cert_pem: Mapped[str | None] = mapped_column(Text)     # the certificate it holds: what revocation lists
    dukpt_key_id: Mapped[str | None] = mapped_column(String(16))       # hex; the PIN pad's initial key id
    first_seen_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime | None]
    online: Mapped[bool] = mapped_column(default=False, server_default=false())
    desired_config_version: Mapped[int | None]
    desired_software_version: Mapped[str | None] = mapped_column(String(32))
    reported_config_version: Mapped[int | None]
    reported_software_version: Mapped[str | None] = mapped_column(String(32))
    backlog: Mapped[int] = mapped_column(default=0, server_default="0")
    backlog_oldest_s: Mapped[int] = mapped_column(default=0, server_default="0")


class ExpectedDevice(Base):
    """A serial number registered ahead (a CSV from the shipment): its enrollment is accepted at once."""

    __tablename__ = "expected_devices"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    device_id: Mapped[str | None] = mapped_column(String(64))
    imported_at: Mapped[dt.datetime]


class EnrollmentToken(Base):
    """A one-time, short-lived enrollment token; only its SHA-256 is stored."""

    __tablename__ = "enrollment_tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    device_id: Mapped[str | None] = mapped_column(String(64))      # the id the device gets; None: made up
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))        # the device it made


class EnrollmentRequest(Base):
    """An enrollment request the registry answered or owes an answer (registry.enroll_state): a device
    waiting for an operator keeps its CSR here, and a final reply retained on the claim client's reply topic
    is cleared from the broker later. One row per request; a refusal that made no device has none."""

    __tablename__ = "enrollment_requests"
    __table_args__ = (Index("ix_enrollment_requests_owed", "replied_at", "reply_cleared_at"),
                      Index("ix_enrollment_requests_client", "client"),
                      Index("ix_enrollment_requests_device", "device_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(64))             # the claim client: its reply topic
    request_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    csr_pem: Mapped[str | None] = mapped_column(Text)           # while its answer is owed
    created_at: Mapped[dt.datetime]
    reply_status: Mapped[str] = mapped_column(String(16))       # pending accepted refused
    # final answers prepared: a conditional UPDATE on it lets one registry host prepare each
    answers: Mapped[int] = mapped_column(default=0, server_default="0")
    prepared_at: Mapped[dt.datetime | None]                     # the last one, being published since
    replied_at: Mapped[dt.datetime | None]                      # the final answer is on the broker
    reply_cleared_at: Mapped[dt.datetime | None]                # ... and cleared there (or replaced)


class ConfigRelease(Base):
    """A signed configuration issued to one device: versions only grow."""

    __tablename__ = "config_releases"
    __table_args__ = (UniqueConstraint("device_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    version: Mapped[int]
    digest: Mapped[str] = mapped_column(String(64))              # SHA-256 of the canonical body
    issued_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    envelope: Mapped[str] = mapped_column(Text)                  # the SIGNED_CONFIG document as sent


class DeviceEvent(Base):
    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_device_at", "device_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    device_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]
    severity: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(48))
    detail: Mapped[str] = mapped_column(String(200))


class DeviceCommand(Base):
    __tablename__ = "device_commands"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    name: Mapped[str] = mapped_column(String(48))
    args: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")   # pending sent done failed rejected
    detail: Mapped[str] = mapped_column(String(200), default="")
    finished_at: Mapped[dt.datetime | None]


class SoftwareRelease(Base):
    __tablename__ = "software_releases"
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)                     # the signed bundle file
    created_at: Mapped[dt.datetime]


class Rollout(Base):
    """A release offered to a fraction of devices first; halted by itself when too many fail."""

    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("software_releases.version"))
    percent: Mapped[int]                                        # of the devices offered in the first wave
    failure_threshold: Mapped[int]                              # percent of failures that halts it
    status: Mapped[str] = mapped_column(String(16), default="running")   # running halted completed
    created_at: Mapped[dt.datetime]
    detail: Mapped[str] = mapped_column(String(200), default="")


class RolloutDevice(Base):
    __tablename__ = "rollout_devices"
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="offered")   # offered installed failed ...
    updated_at: Mapped[dt.datetime]
    detail: Mapped[str] = mapped_column(String(200), default="")


class Authorization(Base):
    __tablename__ = "authorizations"
    # a wallet's open holds (registry.service.wallet_usage_cl) read from the index alone
    # open authorizations of a card or an account, counted against its limits, read from indexes
    __table_args__ = (
        Index("ix_authorizations_wallet_hold", "wallet_id", "status", "expires_at", "allowed_cl"),
        Index("ix_authorizations_card_open", "card_id", "status", "expires_at"),
        Index("ix_authorizations_account_open", "account_id", "status", "expires_at"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    wallet_id: Mapped[int | None] = mapped_column(ForeignKey("wallets.id"))   # before r0007: its one wallet
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    pump: Mapped[int]
    allowed_cl: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="open")   # open, completed
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    # what the authorization may still spend, counted against limits until it completes or expires
    allowed_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # the answers to the account's prompts (registry.fleet.prompts), stored with the sale
    odometer_km: Mapped[int | None] = mapped_column(BigInteger)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"))
    driver_id: Mapped[int | None] = mapped_column(ForeignKey("drivers.id"))


class AuthAllowance(Base):
    """Per product an authorization allows: how much, paid from which wallet."""

    __tablename__ = "auth_allowances"
    auth_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), primary_key=True)
    product: Mapped[str] = mapped_column(String(32), primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    volume_cl: Mapped[int]
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class Hold(Base):
    """What an open authorization holds on a wallet (its unit); released when the authorization completes
    or expires. A wallet's available amount is its balance, plus its credit line, less its open holds."""

    __tablename__ = "holds"
    __table_args__ = (Index("ix_holds_wallet_open", "wallet_id", "released", "expires_at", "amount"),)
    auth_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[dt.datetime]
    released: Mapped[bool] = mapped_column(default=False, server_default=false())


class Transaction(Base):
    __tablename__ = "transactions"
    # a wallet's litres since a date (registry.service.wallet_usage_cl): a range of this month's sales of
    # one wallet, never the history (held is read from the row: an index on it would bar dropping it)
    __table_args__ = (Index("ix_transactions_wallet_usage", "wallet_id", "finished_at", "volume_cl"),
                      Index("ix_transactions_device_seq", "device_id", "seq"),
                      Index("ix_transactions_account_finished", "account_id", "finished_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sale_id: Mapped[str] = mapped_column(String(36), unique=True)
    # the terminal's own count of its sales (1, 2, 3...): a gap is a sale not yet received (reports)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # the card program (contracts.messages.PROGRAM: up to 32 characters); the server default is the one
    # registry.db adds to a database from before this column
    kind: Mapped[str] = mapped_column(String(32), default="fleet", server_default="fleet")
    auth_id: Mapped[str | None] = mapped_column(String(36), index=True)    # registry.db adds it to older
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    wallet_id: Mapped[int | None] = mapped_column(ForeignKey("wallets.id"))
    device_id: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64))
    pump: Mapped[int]
    nozzle: Mapped[int]
    # Sized to what contracts.messages.SALE admits: PostgreSQL enforces lengths and 32-bit INTEGER,
    # SQLite not.
    product: Mapped[str | None] = mapped_column(String(64))
    volume_cl: Mapped[int]
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    price_milli: Mapped[int]
    card_masked: Mapped[str] = mapped_column(String(19))
    finished_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]
    recovered: Mapped[bool] = mapped_column(default=False)
    flags: Mapped[str] = mapped_column(Text, default="")       # comma-separated; a sale's list is unbounded
    # Failed a registry check (registry.checks): kept for an operator, never counted in a wallet's usage.
    held: Mapped[bool] = mapped_column(default=False, server_default=false())
    # a fleet sale's account, and the prompts answered at the pump (statements per card and vehicle)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"))
    driver_id: Mapped[int | None] = mapped_column(ForeignKey("drivers.id"))
    odometer_km: Mapped[int | None] = mapped_column(BigInteger)


class SaleConflict(Base):
    """A sale whose sale_id is stored with other content: kept apart, as received, for an operator."""

    __tablename__ = "sale_conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sale_id: Mapped[str] = mapped_column(String(36), index=True)
    device_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime]
    payload: Mapped[str] = mapped_column(Text)       # the decoded SALE as JSON (a masked card number only)
