"""Load seed data (stations, pumps, prices, devices, fleet accounts and cards) from a TOML fixture.

Card numbers and PINs in the fixture are turned into tokens and verifiers here; neither is stored.
Seeding is idempotent: rows that exist are left alone.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from contracts.cards import mask_pan
from contracts.errors import ConfigError
from registry.keys import RegistryKeys
from registry.models import Account, Card, Device, Nozzle, Product, Station, Transaction, Wallet

__all__ = ["apply_seed", "load_seed"]


def load_seed(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as exc:   # ValueError: a NUL
        raise ConfigError(f"cannot read seed file {path}: {exc}", path=str(path)) from exc


def apply_seed(session: Session, keys: RegistryKeys, seed: dict[str, Any], now: dt.datetime) -> None:
    try:
        _apply(session, keys, seed, now)
    except (KeyError, TypeError, ValueError) as exc:
        session.rollback()
        raise ConfigError(f"seed data is malformed: {exc!r}") from exc


def _apply(session: Session, keys: RegistryKeys, seed: dict[str, Any], now: dt.datetime) -> None:
    for s in seed.get("stations", []):
        session.merge(Station(id=s["id"], name=s["name"], currency=s.get("currency", "EUR")))
    for p in seed.get("products", []):
        session.merge(Product(code=p["code"], name=p["name"]))
    session.flush()
    for n in seed.get("nozzles", []):
        if session.query(Nozzle).filter_by(station_id=n["station"], pump=n["pump"],
                                           nozzle=n["nozzle"]).first():
            continue
        session.add(Nozzle(station_id=n["station"], pump=n["pump"], nozzle=n["nozzle"],
                           product_code=n["product"], price_milli=n["price_milli"]))
    for d in seed.get("devices", []):
        if session.get(Device, d["id"]) is None:
            session.add(Device(id=d["id"], station_id=d["station"],
                               pin_key_hex=keys.seal_device_key(bytes.fromhex(d["pin_key"]))))
    for a in seed.get("accounts", []):
        session.merge(Account(id=a["id"], name=a["name"]))
    for w in seed.get("wallets", []):
        if session.get(Wallet, w["id"]) is None:
            session.add(Wallet(id=w["id"], account_id=w["account"], allowed_products=",".join(w["products"]),
                               monthly_limit_cl=round(w["monthly_limit_litres"] * 100)))
    session.flush()
    for c in seed.get("cards", []):
        token = keys.token(c["pan"])
        if session.query(Card).filter_by(token=token).first():
            continue
        session.add(Card(token=token, masked=mask_pan(c["pan"]), wallet_id=c["wallet"], expiry=c["expiry"],
                         pin_verifier=keys.pin_verifier(token, c["pin"]), status=c.get("status", "active")))
    session.flush()
    for u in seed.get("usage", []):
        # prior fillings this month, so a limit can start out used up
        sale_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"seed-usage:{u['wallet']}:{now:%Y-%m}"))
        if session.query(Transaction).filter_by(sale_id=sale_id).first():
            continue
        session.add(Transaction(sale_id=sale_id, auth_id=None, card_id=None, wallet_id=u["wallet"],
                                device_id="seed", station_id=u["station"], pump=0, nozzle=0, product=None,
                                volume_cl=round(u["litres"] * 100), amount_cents=0, price_milli=0,
                                card_masked="************0000", finished_at=now, received_at=now,
                                flags="seed"))
    session.commit()
