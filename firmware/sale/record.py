"""One sale as the journal keeps it, and the pump preset a program grants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from contracts.reasons import DeclineReason
from firmware.sale.machine import SaleState

__all__ = ["Preset", "SaleRecord"]


@dataclass(frozen=True)
class Preset:
    """The pump's limit for one sale: by volume (centilitres) or by amount (cents)."""
    kind: Literal["volume", "amount"]
    value: int

    @classmethod
    def volume(cls, cl: int) -> Preset:
        return cls("volume", cl)

    @classmethod
    def amount(cls, cents: int) -> Preset:
        return cls("amount", cents)


@dataclass(frozen=True)
class SaleRecord:
    id: str
    state: SaleState
    pump: int
    program: str                # the card program's name: "fleet", "bank", ...
    card_masked: str
    card_token: str
    preset: Preset | None       # the pump's limit once approved
    nozzles: tuple[int, ...]
    reference: str | None       # what the program settles against (authorization id, approval code)
    data: Mapping[str, Any]     # the program's own document (never a PAN, a track or a PIN)
    adjuncts: Mapping[str, Mapping[str, Any]]   # cards riding along (loyalty...), by adjunct name
    nozzle: int | None
    product: str | None
    volume_cl: int | None
    amount_cents: int | None    # what the pump's figures say
    charged_cents: int | None   # what the payment program charges: amount less any adjunct's discount;
    #                             set on an open sale once settled, before its program books the figures
    price_milli: int | None
    totals_before: dict[int, tuple[int, int]] | None   # nozzle -> (volume_cl, amount_cents)
    reason: DeclineReason | None
    flags: tuple[str, ...]
    recovered: bool
    receipt_started: bool       # a print was begun: if not also printed, a reprint is a duplicate
    receipt_printed: bool
    synced: bool
    created_at: float
    finished_at: float | None
    seq: int | None = None      # the terminal's count of its completed sales (1, 2, 3...), by the journal
