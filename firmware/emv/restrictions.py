"""Processing restrictions (EMV 4.4 Book 3 10.4): application version, usage control, dates -> TVR."""

from __future__ import annotations

import datetime as dt

from contracts.errors import CardError
from firmware.emv.data import DataStore, TvrBit

__all__ = ["emv_date", "process_restrictions"]

# Application Usage Control 9F07 byte 1 (Book 3 Annex C2)
AUC_DOMESTIC_CASH, AUC_INTERNATIONAL_CASH = 0x80, 0x40
AUC_DOMESTIC_GOODS, AUC_INTERNATIONAL_GOODS = 0x20, 0x10
AUC_DOMESTIC_SERVICES, AUC_INTERNATIONAL_SERVICES = 0x08, 0x04
AUC_ATM, AUC_NOT_ATM = 0x02, 0x01


def emv_date(raw: bytes, tag: int) -> dt.date:
    """YYMMDD in BCD; YY < 50 is 20YY, else 19YY (Book 4 6.7.3). A malformed date ends the transaction."""
    digits = raw.hex()
    if len(raw) != 3 or not digits.isdigit():
        raise CardError("date is not BCD YYMMDD", tag=f"{tag:X}")
    yy, mm, dd = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    try:
        return dt.date(2000 + yy if yy < 50 else 1900 + yy, mm, dd)
    except ValueError as exc:
        raise CardError("date is not a calendar date", tag=f"{tag:X}") from exc


def _is_atm(terminal_type: int, additional_capabilities: bytes) -> bool:
    """Book 3 10.4.2: an ATM is terminal type x4..x6 operated by a financial institution with cash."""
    return terminal_type in (0x14, 0x15, 0x16) and bool(additional_capabilities[0] & 0x80)


def process_restrictions(store: DataStore, terminal_type: int, additional_capabilities: bytes, *,
                         services: bool, today: dt.date) -> None:
    card_version, terminal_version = store.get(0x9F08), store.get(0x9F09)
    if card_version is not None and terminal_version is not None and card_version != terminal_version:
        store.tvr.set(TvrBit.DIFFERENT_APPLICATION_VERSIONS)

    auc = store.get(0x9F07)
    if auc is not None:
        if len(auc) != 2:
            raise CardError("application usage control has the wrong length", length=len(auc))
        atm = _is_atm(terminal_type, additional_capabilities)
        if not auc[0] & (AUC_ATM if atm else AUC_NOT_ATM):
            store.tvr.set(TvrBit.SERVICE_NOT_ALLOWED)
        issuer_country, terminal_country = store.get(0x5F28), store.get(0x9F1A)
        if issuer_country is not None and store.get(0x9C) in (b"\x00", None):
            domestic = issuer_country == terminal_country
            if services:
                needed = AUC_DOMESTIC_SERVICES if domestic else AUC_INTERNATIONAL_SERVICES
            else:
                needed = AUC_DOMESTIC_GOODS if domestic else AUC_INTERNATIONAL_GOODS
            if not auc[0] & needed:
                store.tvr.set(TvrBit.SERVICE_NOT_ALLOWED)

    effective = store.get(0x5F25)
    if effective is not None and emv_date(effective, 0x5F25) > today:
        store.tvr.set(TvrBit.APPLICATION_NOT_YET_EFFECTIVE)
    expiry = store.get(0x5F24)
    if expiry is not None and emv_date(expiry, 0x5F24) < today:
        store.tvr.set(TvrBit.EXPIRED_APPLICATION)
