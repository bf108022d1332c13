"""The fleet API's request and answer models (registry.web.api_fleet): amounts in integer minor units
(cents, centilitres, sales), card numbers only masked; a card number or PIN sent in is a SecretStr, so it is
never shown by a repr or a log line."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field, SecretStr

__all__ = ["AccountIn", "AccountOut", "AccountView", "AmountIn", "CardOut", "CardView", "CustomerIn",
           "CustomerOut", "CustomerView", "DriverIn", "DriverOut", "ImportOut", "IssueIn", "LimitIn",
           "LimitOut", "MovementOut", "OrderIn", "ReasonIn", "ReissueIn", "RowErrorOut", "VehicleIn",
           "VehicleOut", "WalletIn", "WalletOut", "WindowIn", "WindowOut"]


class CustomerIn(BaseModel):
    name: str
    kind: str = "company"
    tax_id: str = ""


class CustomerOut(BaseModel):
    id: int
    name: str
    kind: str
    tax_id: str
    created_at: dt.datetime | None
    accounts: int


class AccountIn(BaseModel):
    name: str
    prompts: str = ""             # comma list of odometer, vehicle, driver_id
    timezone: str = "UTC"


class AccountOut(BaseModel):
    id: int
    name: str
    customer_id: int | None
    status: str
    prompts: str
    timezone: str
    cards: int = 0


class CustomerView(BaseModel):
    customer: CustomerOut
    accounts: list[AccountOut]


class CardOut(BaseModel):
    id: int
    masked: str
    status: str
    medium: str
    expiry: str                   # YYMM
    account_id: int | None
    vehicle: str
    driver: str
    pin: bool
    pin_tries: int
    replaced_by: int | None
    status_changed_at: dt.datetime | None


class WalletOut(BaseModel):
    id: int
    name: str
    unit: str                     # money: cents; volume: centilitres
    mode: str
    balance: int
    credit_limit: int
    available: int
    priority: int
    products: str
    stations: str
    expires_on: dt.date | None
    status: str


class LimitOut(BaseModel):
    scope: str
    scope_id: int
    period: str
    unit: str
    maximum: int = Field(description="cents, centilitres or sales, by unit")
    used: int
    remaining: int


class WindowOut(BaseModel):
    scope: str
    scope_id: int
    days: list[str]
    start: str
    end: str


class VehicleOut(BaseModel):
    id: int
    number: str
    odometer_km: int | None


class DriverOut(BaseModel):
    id: int
    code: str
    name: str


class MovementOut(BaseModel):
    id: int
    wallet_id: int
    kind: str
    amount: int
    balance_after: int
    at: dt.datetime
    actor: str
    reason: str


class AccountView(BaseModel):
    account: AccountOut
    customer: str
    wallets: list[WalletOut]
    limits: list[LimitOut]
    windows: list[WindowOut]
    cards: list[CardOut]
    vehicles: list[VehicleOut]
    drivers: list[DriverOut]
    movements: list[MovementOut]          # the newest 30


class CardView(BaseModel):
    card: CardOut
    account: str
    limits: list[LimitOut]
    windows: list[WindowOut]


class IssueIn(BaseModel):
    number: SecretStr                     # the card number (a tag: its UID in hex)
    medium: str = "chip"
    expiry: str                           # YYMM
    pin: SecretStr | None = None
    vehicle_id: int | None = None
    driver_id: int | None = None
    activate: bool = False


class ReissueIn(BaseModel):
    number: SecretStr
    medium: str | None = None
    expiry: str
    pin: SecretStr | None = None
    activate: bool = False
    reason: str


class ReasonIn(BaseModel):
    reason: str


class WalletIn(BaseModel):
    unit: str                             # money or volume
    mode: str = "prepaid"
    credit_limit: int = 0
    products: str = ""
    stations: str = ""
    expires_on: dt.date | None = None
    name: str = ""


class OrderIn(BaseModel):
    wallet_ids: list[int]


class LimitIn(BaseModel):
    period: str
    unit: str                             # money (cents), volume (centilitres), count (sales)
    maximum: int
    reason: str = ""


class WindowIn(BaseModel):
    days: list[str]
    start: str                            # HH:MM, in the account's time zone
    end: str                              # HH:MM, up to 24:00; before start: over midnight


class AmountIn(BaseModel):
    amount: int                           # the wallet's unit; a correction may be negative
    reason: str
    key: str | None = None                # books once under it


class VehicleIn(BaseModel):
    number: str


class DriverIn(BaseModel):
    code: str
    name: str = ""


class RowErrorOut(BaseModel):
    row: int
    column: str
    message: str


class ImportOut(BaseModel):
    created: list[int]
    updated: list[int]
    unchanged: int
    errors: list[RowErrorOut]
