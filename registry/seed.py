"""Load seed data (stations, pumps, prices, devices, customers, fleet accounts, wallets, limits, vehicles,
drivers and cards) from a TOML fixture.

Card numbers and PINs in the fixture are turned into tokens and verifiers here; neither is stored.
Seeding is idempotent: rows that exist are left alone.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from contracts.cards import mask_number
from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.fleet import usage as fleet_usage
from registry.keys import RegistryKeys
from registry.models import (
    Account,
    Card,
    Customer,
    Device,
    Driver,
    Limit,
    Nozzle,
    OfflineLimit,
    Product,
    Station,
    StationGroupMember,
    TimeWindow,
    Transaction,
    Vehicle,
    Wallet,
)

__all__ = ["LEGACY_CREDIT", "apply_seed", "load_seed"]

# The credit line of a wallet from before fleet accounts: none to speak of (its account's limits bound it).
LEGACY_CREDIT = 10**12


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
        session.merge(Product(code=p["code"], name=p["name"], code3=p.get("code3"),
                              group=p.get("group", "fuel")))
    session.flush()
    for g in seed.get("station_groups", []):
        for station in g["stations"]:
            session.merge(StationGroupMember(group=g["name"], station_id=station))
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
    for c in seed.get("customers", []):
        session.merge(Customer(id=c["id"], name=c["name"], kind=c.get("kind", "company"),
                               tax_id=c.get("tax_id", ""), created_at=now))
    session.flush()
    for a in seed.get("accounts", []):
        if session.get(Account, a["id"]) is None:
            session.add(Account(id=a["id"], name=a["name"], customer_id=a.get("customer"),
                                prompts=",".join(a.get("prompts", [])), timezone=a.get("timezone", "UTC")))
    session.flush()
    _wallets(session, seed, now)
    _people(session, seed)
    _cards(session, keys, seed, now)
    _rules(session, seed)
    _usage(session, seed, now)
    _sequences(session)
    session.commit()


# Tables the seed writes with explicit integer ids.
_NUMBERED = (Customer, Account, Wallet, Vehicle, Driver, Card, Nozzle)


def _sequences(session: Session) -> None:
    """On PostgreSQL, move each id sequence past the ids the seed wrote: a row an operator adds later gets a
    new id instead of colliding with a seeded one (SQLite takes max(id) + 1 by itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.flush()
    for model in _NUMBERED:
        table = model.__tablename__
        session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                             f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"))


def _wallets(session: Session, seed: dict[str, Any], now: dt.datetime) -> None:
    """Wallets, and their opening balance as a top-up. A wallet in the format before fleet accounts
    (monthly_limit_litres) becomes what r0007 makes of one: post-paid litres without a credit ceiling, its
    limit a monthly volume limit on its account (the sum of the account's such wallets)."""
    legacy: dict[int, int] = {}
    for w in seed.get("wallets", []):
        if session.get(Wallet, w["id"]) is not None:
            continue
        if "monthly_limit_litres" in w:
            limit = round(w["monthly_limit_litres"] * 100)
            legacy[w["account"]] = legacy.get(w["account"], 0) + limit
            wallet = Wallet(id=w["id"], account_id=w["account"], allowed_products=",".join(w["products"]),
                            monthly_limit_cl=limit, unit="volume", mode="postpaid",
                            credit_limit=LEGACY_CREDIT, balance=0)
        else:
            wallet = Wallet(id=w["id"], account_id=w["account"], name=w.get("name", ""), unit=w["unit"],
                            mode=w.get("mode", "prepaid"), credit_limit=w.get("credit", 0), balance=0,
                            allowed_products=",".join(w.get("products", [])),
                            stations=",".join(w.get("stations", [])), priority=w.get("priority", 0),
                            expires_on=w.get("expires_on"))
        session.add(wallet)
        session.flush()
        if w.get("topup"):
            ledger.topup(session, wallet, w["topup"], key=f"seed-topup:{wallet.id}", at=now, actor="seed",
                         reason="opening balance")
    for account, limit in legacy.items():
        if not session.query(Limit).filter_by(scope="account", scope_id=account, period="month",
                                              unit="volume").first():
            session.add(Limit(scope="account", scope_id=account, period="month", unit="volume",
                              maximum=limit))
    session.flush()


def _people(session: Session, seed: dict[str, Any]) -> None:
    for v in seed.get("vehicles", []):
        if session.get(Vehicle, v["id"]) is None:
            session.add(Vehicle(id=v["id"], account_id=v["account"], number=v["number"],
                                odometer_km=v.get("odometer_km")))
    for d in seed.get("drivers", []):
        if session.get(Driver, d["id"]) is None:
            session.add(Driver(id=d["id"], account_id=d["account"], code=d["code"], name=d.get("name", "")))
    session.flush()


def _cards(session: Session, keys: RegistryKeys, seed: dict[str, Any], now: dt.datetime) -> None:
    """Cards by number (a PAN, or a tag's "U" and UID hex). One seeded with a wallet spends only that wallet
    (the format before fleet accounts); its account is the wallet's."""
    for c in seed.get("cards", []):
        number = c.get("pan") or c["number"]
        token = keys.token(number)
        if session.query(Card).filter_by(token=token).first():
            continue
        wallet = session.get(Wallet, c["wallet"]) if "wallet" in c else None
        account = wallet.account_id if wallet is not None else c["account"]
        pin = c.get("pin")
        session.add(Card(token=token, masked=mask_number(number), wallet_id=wallet.id if wallet else None,
                         account_id=account, vehicle_id=c.get("vehicle"), driver_id=c.get("driver"),
                         expiry=c.get("expiry", "9912"), medium=c.get("medium", "chip"),
                         pin_verifier=keys.pin_verifier(token, pin) if pin else "",
                         number_sealed=keys.seal_number(number), status=c.get("status", "active"),
                         status_changed_at=now))
    session.flush()


def _rules(session: Session, seed: dict[str, Any]) -> None:
    for lim in seed.get("limits", []):
        if not session.query(Limit).filter_by(scope=lim["scope"], scope_id=lim["id"], period=lim["period"],
                                              unit=lim["unit"]).first():
            session.add(Limit(scope=lim["scope"], scope_id=lim["id"], period=lim["period"], unit=lim["unit"],
                              maximum=lim["maximum"]))
    for o in seed.get("offline_limits", []):
        if session.get(OfflineLimit, o["name"]) is None:
            session.add(OfflineLimit(name=o["name"], amount_cents=o["amount_cents"],
                                     volume_cl=o["volume_cl"]))
    for w in seed.get("windows", []):
        if not session.query(TimeWindow).filter_by(scope=w["scope"], scope_id=w["id"]).first():
            session.add(TimeWindow(scope=w["scope"], scope_id=w["id"], weekdays=w["weekdays"],
                                   start_minute=w["start_minute"], end_minute=w["end_minute"]))
    session.flush()


def _usage(session: Session, seed: dict[str, Any], now: dt.datetime) -> None:
    """Fillings before the seed (this month), so a limit can start out used up: a sale, its debit and its
    usage, as the registry books a synced one."""
    for u in seed.get("usage", []):
        sale_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"seed-usage:{u['wallet']}:{now:%Y-%m}"))
        if session.query(Transaction).filter_by(sale_id=sale_id).first():
            continue
        wallet = session.get(Wallet, u["wallet"])
        account = session.get(Account, wallet.account_id) if wallet is not None else None
        if wallet is None or account is None:
            raise ValueError(f"usage names an unknown wallet {u['wallet']}")
        volume = round(u["litres"] * 100)
        session.add(Transaction(sale_id=sale_id, auth_id=None, card_id=None, wallet_id=wallet.id,
                                account_id=account.id, device_id="seed", station_id=u["station"], pump=0,
                                nozzle=0, product=None, volume_cl=volume, amount_cents=0, price_milli=0,
                                card_masked="************0000", finished_at=now, received_at=now,
                                flags="seed"))
        if wallet.unit == "volume":
            ledger.post(session, wallet, "sale", -volume, key=f"sale:{sale_id}", at=now, sale_id=sale_id,
                        actor="seed", reason="seeded usage")
        fleet_usage.record(session, account_id=account.id, card_id=None, tz=account.timezone, at_utc=now,
                           amount_cents=0, volume_cl=volume)
