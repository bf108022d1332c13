"""The receipt of a completed sale, fleet or bank, from its journal row and the station configuration."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from contracts.receipt import ReceiptLine
from firmware.bank_summary import cvm_text, entry_text
from firmware.journal import SaleRecord
from firmware.receipt import bank_receipt, fleet_receipt

__all__ = ["receipt_for"]


def receipt_for(rec: SaleRecord, config: dict[str, Any], *, station: str, terminal: str, product: str,
                currency: str, copy: bool) -> list[ReceiptLine]:
    common: dict[str, Any] = {
        "station_name": config.get("station_name", station), "station": station, "terminal": terminal,
        "sale_id": rec.id, "when": dt.datetime.fromtimestamp(rec.finished_at or time.time(), dt.UTC),
        "pump": rec.pump, "product": product, "volume_cl": rec.volume_cl or 0,
        "price_milli": rec.price_milli or 0, "amount_cents": rec.amount_cents or 0,
        "card_masked": rec.card_masked, "currency": currency, "copy": copy}
    if rec.kind != "bank":
        return fleet_receipt(**common, auth_id=rec.auth_id or "")
    bank = rec.bank or {}
    return bank_receipt(
        **common, preauth_cents=rec.allowed_cents or 0, app_label=bank.get("app_label", ""),
        aid_hex=bank.get("aid", ""), entry_mode=entry_text(bank.get("entry_mode", "")),
        cvm=cvm_text(bank.get("cvm_results", "")), auth_code=rec.auth_id or "", tvr_hex=bank.get("tvr", ""),
        tsi_hex=bank.get("tsi", ""), partial=bool(bank.get("partial")))
