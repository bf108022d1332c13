"""Demo data for the back office: a few stations, a fleet customer, a loyalty cardholder and one web user of
each role, with fixed passwords (for the simulator and screenshots only; never on a real network).

Everything is made through the registry's own functions (registry.network, registry.fleet.admin and
cards, registry.loyalty.admin, registry.web.auth.add_user), each change audited under the actor "demo".
`seed` is idempotent: what exists already (found by station id, customer name, card token, login) is left
alone, and a second call returns the same sign-ins. Stations, pumps and products are made only when the
database has no station; otherwise the station manager gets the first station there is.

With sales=True it also books about sixty sales of the last fortnight the way a terminal's arrive: a demo
terminal per station (a Device row written directly, as registry.seed does, online, with a sealed PIN key),
fleet sales authorized by registry.fleet.authorize and stored by registry.service.record_sales, bank sales
stored for reports only, some with the demo loyalty card shown (points earned by registry.loyalty.earnsale).
Sales are made once: a second call finds the first one stored and books nothing. seed commits.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import messages
from contracts.cards import luhn_ok
from contracts.panseal import derive_pan_key, seal_pan
from registry import network
from registry.fleet import admin, cards
from registry.fleet.authorize import authorize
from registry.keys import RegistryKeys
from registry.loyalty import admin as loyalty_admin
from registry.models import Account, Card, Customer, Device, EarnRule, Nozzle, Product, Station, Transaction
from registry.service import record_sales
from registry.web.auth import add_user
from registry.web_models import WebUser

__all__ = ["ACTOR", "CUSTOMER", "FLEET_NUMBERS", "LOYALTY_NUMBER", "DemoLogin", "seed"]

ACTOR = "demo"
CUSTOMER = "Demo Transport Ltd"
CARDHOLDER = "Dana Demo"
# (id, name, time zone); products (code, name, Conexxus code, group); pumps: (pump, nozzle, product, price)
STATIONS = (("DEMO-1", "Demo North Road", "Europe/Berlin"), ("DEMO-2", "Demo Harbour", "Europe/Berlin"))
PRODUCTS = (("diesel", "Diesel", "019", "fuel"), ("petrol95", "Unleaded 95", "001", "fuel"),
            ("adblue", "AdBlue", "062", "adblue"))
PUMPS = ((1, 1, "diesel", 1659), (1, 2, "petrol95", 1789), (2, 1, "diesel", 1659), (2, 2, "adblue", 899),
         (3, 1, "petrol95", 1789))
EXPIRY = "3012"


def _luhn(body: str) -> str:
    """body and its Luhn check digit (ISO/IEC 7812-1)."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# the network's fleet IIN 707700 and loyalty IIN 707701, a "99" range no fixture or sign-up number uses
FLEET_NUMBERS = tuple(_luhn(f"70770099000000{i}") for i in (1, 2, 3))
LOYALTY_NUMBER = _luhn("707701990000001")
BANK_MASKED = ("411111******1111", "545454******5454", "376000*****0008")


@dataclass(frozen=True)
class DemoLogin:
    role: str
    login: str
    password: str
    sees: str            # what they see, for the simulator's banner and docs/web.md


def seed(s: Session, keys: RegistryKeys, now: dt.datetime, *, sales: bool = False,
         cheap: bool = False) -> list[DemoLogin]:
    """The demo data (see the module docstring) and its sign-ins; `now` naive UTC. cheap: lighter argon2
    hashes (tests)."""
    now = network.naive_utc(now)
    if s.scalar(select(func.count()).select_from(Station)) == 0:
        _network(s, now)
    station_id = s.scalars(select(Station.id).order_by(Station.id)).first() or STATIONS[0][0]
    customer = _customer(s, keys, now)
    account_id = _cardholder(s, keys, now)
    logins = [
        DemoLogin("operator", "operator@demo.test", "operator-demo",
                  "the whole network: customers, cards, stations, terminals, prices, loyalty, reports"),
        DemoLogin("station", "station@demo.test", "station-demo",
                  f"station {station_id} only: its pumps, prices, terminals and reports"),
        DemoLogin("fleet", "fleet@demo.test", "fleet-demo",
                  f"{CUSTOMER}: its cards, limits, balances and statements"),
        DemoLogin("cardholder", "cardholder@demo.test", "cardholder-demo",
                  "one loyalty card: its points and last movements"),
    ]
    scope: dict[str, dict[str, Any]] = {
        "operator": {"name": "Olga Operator"}, "station": {"name": "Sam Station", "station_ids": station_id},
        "fleet": {"name": "Fred Fleet", "customer_id": customer.id},
        "cardholder": {"name": CARDHOLDER, "account_id": account_id}}
    for each in logins:
        if s.scalar(select(WebUser.id).where(WebUser.login == each.login)) is None:
            add_user(s, each.login, each.password, role=each.role, actor=ACTOR, now=now, cheap=cheap,
                     **scope[each.role])
    s.commit()
    if sales:
        _sales(s, keys, now, customer.id)
    return logins


def _network(s: Session, now: dt.datetime) -> None:
    for code, name, code3, group in PRODUCTS:
        if s.get(Product, code) is None:
            network.add_product(s, code, name, code3=code3, group=group, actor=ACTOR, now=now)
    for station_id, name, zone in STATIONS:
        network.add_station(s, station_id, name, currency="EUR", timezone=zone, actor=ACTOR, now=now)
        for pump, number, product, price in PUMPS:
            network.add_nozzle(s, station_id, pump, number, product, price, actor=ACTOR, now=now)
    s.flush()


def _customer(s: Session, keys: RegistryKeys, now: dt.datetime) -> Customer:
    """The fleet customer, its account, a litres and a money wallet (topped up), three active cards."""
    customer = s.scalar(select(Customer).where(Customer.name == CUSTOMER))
    if customer is not None:
        return customer
    customer = admin.create_customer(s, CUSTOMER, tax_id="DE999000111", actor=ACTOR, now=now)
    account = admin.create_account(s, customer.id, "Demo trucks", timezone="Europe/Berlin", actor=ACTOR,
                                   now=now)
    diesel = "diesel" if s.get(Product, "diesel") is not None else ""
    litres = admin.add_wallet(s, account.id, unit="volume", mode="prepaid", products=diesel,
                              name="diesel litres", actor=ACTOR, now=now)
    money = admin.add_wallet(s, account.id, unit="money", mode="postpaid", credit_limit=500_000,
                             name="fuel card money", actor=ACTOR, now=now)
    admin.topup(s, litres.id, 150_000, actor=ACTOR, reason="demo opening balance", now=now, key="demo-litres")
    admin.topup(s, money.id, 100_000, actor=ACTOR, reason="demo opening balance", now=now, key="demo-money")
    admin.set_limit(s, "account", account.id, "month", "money", 400_000, actor=ACTOR, now=now)
    for i, number in enumerate(FLEET_NUMBERS):
        if s.scalar(select(Card.id).where(Card.token == keys.token(number))) is not None:
            continue
        vehicle = admin.add_vehicle(s, account.id, f"DEMO{i + 1}", actor=ACTOR, now=now)
        issued = cards.issue_card(s, keys, account.id, number, medium="chip", expiry=EXPIRY, pin=None,
                                  vehicle_id=vehicle.id, actor=ACTOR, now=now, activate=True)
        admin.set_limit(s, "card", issued.id, "day", "volume", 20_000, actor=ACTOR, now=now)
    s.flush()
    return customer


def _cardholder(s: Session, keys: RegistryKeys, now: dt.datetime) -> int:
    """The loyalty account of the demo card (made with its card when the card is not there)."""
    account_id = s.scalar(select(Card.account_id).where(Card.token == keys.token(LOYALTY_NUMBER)))
    if account_id is not None:
        return account_id
    account = loyalty_admin.create_account(s, CARDHOLDER, issued_on=now.date(), timezone="Europe/Berlin",
                                           actor=ACTOR, now=now)
    loyalty_admin.add_card(s, keys, account.id, LOYALTY_NUMBER, medium="chip", expiry=EXPIRY, actor=ACTOR,
                           now=now)
    s.flush()
    return account.id


# -- sales --------------------------------------------------------------------------------------------------

def _sale_id(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"forecourt-demo-sale:{i}"))


def _terminal(s: Session, keys: RegistryKeys, station_id: str, now: dt.datetime) -> Device:
    """The station's demo terminal, online (a Device row, as registry.seed writes one)."""
    device_id = f"D-{station_id}"[:64]
    device = s.get(Device, device_id)
    if device is None:
        device = Device(id=device_id, station_id=station_id, status="active",
                        pin_key_hex=keys.seal_device_key(os.urandom(16)), serial=f"SN-{station_id}"[:64],
                        first_seen_at=now - dt.timedelta(days=30), last_seen_at=now, online=True,
                        reported_software_version="1.0.0", desired_software_version="1.0.0")
        s.add(device)
        s.flush()
    return device


def _sales(s: Session, keys: RegistryKeys, now: dt.datetime, customer_id: int) -> None:
    if s.scalar(select(Transaction.id).where(Transaction.sale_id == _sale_id(0))) is not None:
        return
    if s.scalar(select(func.count()).select_from(EarnRule)) == 0:
        loyalty_admin.add_rule(s, "*", "volume", 1000, actor=ACTOR, now=now)     # a point a litre
    pumps = s.scalars(select(Nozzle).order_by(Nozzle.station_id, Nozzle.pump, Nozzle.nozzle)).all()
    by_station: dict[str, list[Nozzle]] = {}
    for n in pumps:
        by_station.setdefault(n.station_id, []).append(n)
    stations = sorted(by_station)[:3]
    if not stations:
        return
    terminals = {st: _terminal(s, keys, st, now) for st in stations}
    s.commit()
    fleet = s.scalars(select(Card).join(Account, Card.account_id == Account.id)
                      .where(Account.customer_id == customer_id, Card.status == "active")
                      .order_by(Card.id)).all()
    fleet_numbers = [n for n in FLEET_NUMBERS if keys.token(n) in {c.token for c in fleet}]
    draw = random.Random(16)
    seqs: dict[str, int] = {}
    for i in range(60):
        station = stations[i % len(stations)]
        nozzle = draw.choice(by_station[station])
        device = terminals[station]
        at = now - dt.timedelta(days=14) + dt.timedelta(minutes=i * 330 + draw.randrange(0, 120))
        volume = draw.randrange(1500, 6500) if nozzle.product_code != "adblue" else draw.randrange(300, 1200)
        seqs[device.id] = seqs.get(device.id, 0) + 1
        doc: dict[str, Any] = {
               "sale_id": _sale_id(i), "kind": "bank", "auth_id": None, "terminal": device.id,
               "station": station, "pump": nozzle.pump, "nozzle": nozzle.nozzle,
               "product": nozzle.product_code,
               "volume_cl": volume, "amount_cents": (volume * nozzle.price_milli + 500) // 1000,
               "price_milli": nozzle.price_milli, "card_masked": BANK_MASKED[i % len(BANK_MASKED)],
               "finished_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "recovered": False, "flags": [],
               "seq": seqs[device.id]}
        pin_key = derive_pan_key(keys.device_key(device.pin_key_hex))
        if fleet_numbers and i % 3 == 0:
            _fleet_sale(s, keys, doc, fleet_numbers[(i // 3) % len(fleet_numbers)], pin_key, at)
        elif i % 5 in (1, 2):
            doc["loyalty_sealed"] = seal_pan(pin_key, LOYALTY_NUMBER, request_id=doc["sale_id"],
                                             terminal=device.id, station=station)
        sale = messages.decode(messages.encode(doc, messages.SALE), messages.SALE)
        record_sales(s, [sale], at + dt.timedelta(seconds=30), keys)


def _fleet_sale(s: Session, keys: RegistryKeys, doc: dict[str, Any], number: str, pin_key: bytes,
                at: dt.datetime) -> None:
    """Make doc a fleet sale of the card: authorized first (the registry's answer caps the volume)."""
    rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"forecourt-demo-auth:{doc['sale_id']}"))
    req = {"request_id": rid, "terminal": doc["terminal"], "station": doc["station"], "pump": doc["pump"],
           "pan_sealed": seal_pan(pin_key, number, request_id=rid, terminal=doc["terminal"],
                                  station=doc["station"]),
           "expiry": EXPIRY, "pin_block": "", "medium": "chip", "prompts": {}}
    answer = authorize(s, keys, messages.decode(messages.encode(req, messages.AUTH_REQUEST),
                                                messages.AUTH_REQUEST), at - dt.timedelta(minutes=3))
    allowed = ({a.nozzle: a.volume_cl for a in answer.allowances}
               or dict.fromkeys(answer.nozzles, answer.allowed_cl))
    if doc["nozzle"] not in allowed:
        return                                # declined (a limit, a product): the sale stays a bank one
    volume = min(doc["volume_cl"], allowed[doc["nozzle"]])
    doc.update(kind="fleet", auth_id=answer.auth_id, volume_cl=volume,
               card_masked=answer.card_masked or doc["card_masked"],
               amount_cents=(volume * doc["price_milli"] + 500) // 1000)
