"""The chip wallet API's request and answer models (registry.web.api_purse; OpenAPI describes them).
Amounts are cents or centilitres by the chip wallet's unit; card numbers only masked."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

__all__ = ["KEY_SIZE", "FlagOut", "LimitsIn", "OrderOut", "PurseOut", "PurseView", "ReasonIn", "RecordOut",
           "SamOut", "ScriptOut", "TopupIn", "WalletOut"]

KEY_SIZE = 64                       # a form's one-time key, as registry.fleet.admin.KEY_SIZE


class WalletOut(BaseModel):
    number: int = Field(description="the chip wallet 0..7")
    wallet_id: int = Field(description="the registry wallet that shadows it")
    name: str
    unit: str = Field(description="money or volume")
    balance: int = Field(description="the shadow balance: cents or centilitres, by unit")
    status: str


class OrderOut(BaseModel):
    id: int
    wallet: int
    amount: int = Field(description="cents or centilitres, the chip wallet's unit")
    unit: str
    status: str = Field(description="open, applied or cancelled")
    loading: bool = Field(description="a terminal has the load granted; the card's record will settle it")
    actor: str
    requested_at: dt.datetime


class ScriptOut(BaseModel):
    id: int
    op: str
    wallet: int | None = None
    unit: str = Field(default="", description="set_limits: the wallet's unit, money or volume")
    day: int | None = Field(default=None, description="set_limits: per-day limit, 0 none")
    month: int | None = Field(default=None, description="set_limits: per-month limit, 0 none")
    status: str
    actor: str
    requested_at: dt.datetime
    issued_at: dt.datetime | None


class RecordOut(BaseModel):
    id: int
    kind: str
    counter: int | None
    wallet: int | None
    amount: int | None
    unit: str
    time: dt.datetime | None = Field(description="the terminal's clock, as the card accepted it (UTC)")
    terminal: str = Field(description="the terminal of the SAM the card dealt with, else its SAM id")
    sam_id: str
    flags: list[str]
    counted: bool
    received_at: dt.datetime


class FlagOut(BaseModel):
    id: int
    flag: str
    detail: str
    at: dt.datetime
    purse_id: str
    card_id: int | None = None
    card: str = Field(default="", description="masked")


class PurseOut(BaseModel):
    purse_id: str
    chip_status: str
    last_counter: int
    last_record_counter: int
    last_contact_at: dt.datetime | None


class PurseView(BaseModel):
    card_id: int
    card: str = Field(description="masked")
    card_status: str
    can_order: bool = Field(default=False, description="top-ups may be ordered: the card is not closed")
    account_id: int | None
    purse: PurseOut | None = Field(description="None: the card carries no chip purse")
    wallets: list[WalletOut] = []
    orders: list[OrderOut] = []
    scripts: list[ScriptOut] = Field(default=[], description="operator scripts waiting for the chip")
    records: list[RecordOut] = []
    flags: list[FlagOut] = []


class TopupIn(BaseModel):
    wallet: int = Field(description="the chip wallet 0..7")
    amount: int = Field(description="cents for a money wallet, centilitres for a volume one")
    unit: str = Field(description="money or volume: must be the chip wallet's unit")
    key: str | None = Field(default=None, max_length=KEY_SIZE,
                            description="ordered once however often sent")


class LimitsIn(BaseModel):
    wallet: int
    day: int = Field(description="per-day limit in the wallet's unit (cents, centilitres); 0 no limit")
    month: int = Field(description="per-month limit; 0 no limit")
    reason: str = Field(default="", max_length=200)


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=200)


class SamOut(BaseModel):
    sam_id: str
    terminal: str
    status: str
    key_version: int
    last_seq: int
    created_at: dt.datetime
