"""Fleet authorization (registry.fleet.authorize through registry.service.authorize) on a real SQLite registry
seeded in the fleet format: prompts, PIN, card status, wallets, limits, time windows and holds.

Every request crosses the wire as a terminal sends it (AUTH_REQUEST encoded and decoded, the card number
sealed to the request, the PIN block bound to contracts.panseal.pin_pan), and every answer is read back
from its AUTH_RESPONSE. tests/test_fleet_settle.py reuses the Fleet environment below.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select, update

from contracts import messages as m
from contracts.cards import mask_number
from contracts.panseal import derive_pan_key, pin_pan, seal_pan
from contracts.reasons import DeclineReason as R
from registry.db import open_database
from registry.fleet import ledger, rules
from registry.keys import load_or_create_keys
from registry.models import (
    Account,
    AuthAllowance,
    Authorization,
    Base,
    Card,
    Hold,
    Transaction,
    Vehicle,
    Wallet,
)
from registry.seed import apply_seed
from registry.service import MAX_FILL_CL, authorize, record_sale, record_sales

NOW = dt.datetime(2026, 12, 2, 10, 0)          # a Wednesday, 10:00 UTC
PIN_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD = "7077001000000019"
CARD2 = "7077001000000027"
TAG = "U04A1B2C3D4E5F6"                        # a 7-byte UID (ISO/IEC 14443-3 double size)
PRICES = {"diesel": 1659, "petrol95": 1789, "adblue": 899}
# pump 1 of ST-1: diesel, petrol95, adblue on nozzles 1, 2, 3; ST-2's pump 1: diesel, petrol95
NOZZLES = {("ST-1", 1): ("diesel", "petrol95", "adblue"), ("ST-2", 1): ("diesel", "petrol95")}


def base_seed() -> dict[str, Any]:
    """One customer, one account (UTC, no prompts), one active chip card with PIN 1234 and no wallet yet."""
    return {
        "stations": [{"id": "ST-1", "name": "One"}, {"id": "ST-2", "name": "Two"}],
        "station_groups": [{"name": "north", "stations": ["ST-2"]}],
        # Conexxus product codes as registry.fleet.rules.CODE3 cites them: 019 diesel #2, 001 regular, 062 DEF
        "products": [{"code": "diesel", "name": "Diesel", "code3": "019"},
                     {"code": "petrol95", "name": "Unleaded 95", "code3": "001"},
                     {"code": "adblue", "name": "AdBlue", "code3": "062"}],
        "nozzles": [{"station": st, "pump": pump, "nozzle": i + 1, "product": p, "price_milli": PRICES[p]}
                    for (st, pump), products in NOZZLES.items() for i, p in enumerate(products)],
        "devices": [{"id": "T-1", "station": "ST-1", "pin_key": PIN_KEY.hex()},
                    {"id": "T-2", "station": "ST-2", "pin_key": PIN_KEY.hex()}],
        "customers": [{"id": 1, "name": "ACME", "tax_id": "DE123"}],
        "accounts": [{"id": 1, "name": "ACME fleet", "customer": 1}],
        "wallets": [], "vehicles": [], "drivers": [], "limits": [], "windows": [],
        "cards": [{"number": CARD, "account": 1, "pin": "1234", "expiry": "2912"}],
    }


def litres_wallet(wid: int = 1, topup: int = 100_000, **over: Any) -> dict[str, Any]:
    return {"id": wid, "account": 1, "unit": "volume", "mode": "prepaid", "topup": topup, **over}


class Fleet:
    """A seeded registry and a terminal's view of it."""

    def __init__(self, tmp_path: Path, doc: dict[str, Any], url: str | None = None) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.engine, self.sessions = open_database(url or f"sqlite:///{tmp_path / 'registry.db'}")
        if url is not None:                         # the module's PostgreSQL: every test from the seed alone
            Base.metadata.drop_all(self.engine)
            Base.metadata.create_all(self.engine)
        self.keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
        with self.sessions() as s:
            apply_seed(s, self.keys, doc, NOW)

    def request(self, number: str = CARD, pin: str | None = "1234", *, pump: int = 1, terminal: str = "T-1",
                station: str = "ST-1", prompts: dict[str, str] | None = None, medium: str = "chip",
                block_pan: str | None = None) -> dict[str, Any]:
        rid = str(uuid.uuid4())
        block = "" if pin is None else encipher_pinblock_iso_4(
            PIN_KEY, pin, block_pan or pin_pan(number)).hex().upper()
        req = {"request_id": rid, "terminal": terminal, "station": station, "pump": pump,
               "pan_sealed": seal_pan(derive_pan_key(PIN_KEY), number, request_id=rid, terminal=terminal,
                                      station=station),
               "expiry": "2912", "pin_block": block, "medium": medium, "prompts": prompts or {}}
        return m.decode(m.encode(req, m.AUTH_REQUEST), m.AUTH_REQUEST)       # what the wire carries

    def auth(self, number: str = CARD, pin: str | None = "1234", *, now: dt.datetime = NOW,
             **kw: Any) -> m.AuthAnswer:
        req = self.request(number, pin, **kw)
        with self.sessions() as s:
            answer = authorize(s, self.keys, req, now)
        wire = m.decode(m.encode(answer.to_doc(), m.AUTH_RESPONSE), m.AUTH_RESPONSE)
        return m.AuthAnswer.from_doc(wire)

    def approved(self, number: str = CARD, pin: str | None = "1234", **kw: Any) -> m.AuthAnswer:
        answer = self.auth(number, pin, **kw)
        assert answer.approved, answer.reason
        return answer

    def sale_doc(self, auth_id: str | None, volume_cl: int, *, nozzle: int = 1, station: str = "ST-1",
                 terminal: str = "T-1", finished: dt.datetime = NOW + dt.timedelta(minutes=5),
                 **over: Any) -> dict[str, Any]:
        product = NOZZLES[(station, 1)][nozzle - 1] if nozzle else None
        price = PRICES[product] if product else 0
        doc = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": auth_id, "terminal": terminal,
               "station": station, "pump": 1, "nozzle": nozzle, "product": product, "volume_cl": volume_cl,
               "amount_cents": rules.amount_of(volume_cl, price) if price else 0, "price_milli": price,
               "card_masked": mask_number(CARD), "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "recovered": False, "flags": []}
        doc.update(over)
        return m.decode(m.encode(doc, m.SALE), m.SALE)

    def record(self, doc: dict[str, Any], now: dt.datetime = NOW + dt.timedelta(minutes=6)) -> dict[str, Any]:
        with self.sessions() as s:
            ack = record_sale(s, doc, now, self.keys)
        m.encode(ack, m.SALE_ACK)
        return ack

    def record_batch(self, docs: list[dict[str, Any]],
                     now: dt.datetime = NOW + dt.timedelta(minutes=6)) -> list[dict[str, Any] | None]:
        with self.sessions() as s:
            return record_sales(s, docs, now, self.keys)

    def sell(self, answer: m.AuthAnswer, volume_cl: int, **kw: Any) -> dict[str, Any]:
        doc = self.sale_doc(answer.auth_id, volume_cl, **kw)
        ack = self.record(doc)
        assert (ack["status"], ack["reason"]) == ("stored", ""), ack
        return doc

    def offline_doc(self, number: str, volume_cl: int, **kw: Any) -> dict[str, Any]:
        doc = self.sale_doc(None, volume_cl, flags=["offline"], **kw)
        doc["card_sealed"] = seal_pan(derive_pan_key(PIN_KEY), number, request_id=doc["sale_id"],
                                      terminal=doc["terminal"], station=doc["station"])
        doc["card_masked"] = mask_number(number)
        return m.decode(m.encode(doc, m.SALE), m.SALE)

    # -- reading the registry --------------------------------------------------------------------------
    def one(self, model: type, *where: Any) -> Any:
        with self.sessions() as s:
            return s.scalars(select(model).where(*where)).one()

    def all(self, model: type, *where: Any) -> list[Any]:
        with self.sessions() as s:
            return list(s.scalars(select(model).where(*where)))

    def count(self, model: type, *where: Any) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def card(self, number: str = CARD) -> Card:
        return self.one(Card, Card.token == self.keys.token(number))

    def balance(self, wid: int) -> int:
        return self.one(Wallet, Wallet.id == wid).balance

    def available(self, wid: int, now: dt.datetime = NOW) -> int:
        with self.sessions() as s:
            wallet = s.get(Wallet, wid)
            assert wallet is not None
            return ledger.available(s, wallet, now)

    def set(self, model: type, where: Any, **values: Any) -> None:
        with self.sessions() as s:
            s.execute(update(model).where(where).values(**values))
            s.commit()


@pytest.fixture
def doc() -> dict[str, Any]:
    return base_seed()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def build(seed: dict[str, Any]) -> Fleet:
        made.append(Fleet(tmp_path / str(len(made)), seed))
        return made[-1]
    yield build
    for each in made:
        each.engine.dispose()


def offered(answer: m.AuthAnswer) -> dict[str, int]:
    """product -> volume_cl of an approval's allowances."""
    return {a.product: a.volume_cl for a in answer.allowances}


# -- prompts -------------------------------------------------------------------------------------------------
def prompting(doc: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    doc["accounts"][0]["prompts"] = prompts
    doc["wallets"] = [litres_wallet()]
    doc["vehicles"] = [{"id": 1, "account": 1, "number": "AB12", "odometer_km": 120_000},
                       {"id": 2, "account": 1, "number": "CD34"}]
    doc["drivers"] = [{"id": 1, "account": 1, "code": "0042", "name": "Ann"}]
    doc["accounts"].append({"id": 2, "name": "Other"})
    doc["vehicles"].append({"id": 3, "account": 2, "number": "ZZ99"})
    doc["drivers"].append({"id": 2, "account": 2, "code": "0099"})
    return doc


def test_missing_prompts_are_asked_for_pin_first_nothing_held_no_pin_try(make: Any,
                                                                         doc: dict[str, Any]) -> None:
    fleet = make(prompting(doc, ["odometer", "vehicle"]))
    answer = fleet.auth(pin=None)
    assert (answer.approved, answer.reason) == (False, R.PROMPTS_REQUIRED)
    assert answer.prompts == ("pin", "odometer", "vehicle")
    answer = fleet.auth()                           # the PIN given, the prompts still missing
    assert (answer.reason, answer.prompts) == (R.PROMPTS_REQUIRED, ("odometer", "vehicle"))
    answer = fleet.auth(prompts={"odometer": "120500"})
    assert (answer.reason, answer.prompts) == (R.PROMPTS_REQUIRED, ("vehicle",))
    assert fleet.count(Authorization) == 0 and fleet.count(Hold) == 0
    assert fleet.card().pin_tries == 0
    assert fleet.available(1) == 100_000


def test_no_prompts_and_no_pin_asks_for_the_pin_alone(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    answer = fleet.auth(pin=None)
    assert (answer.reason, answer.prompts) == (R.PROMPTS_REQUIRED, ("pin",))
    assert fleet.count(Hold) == 0


def test_prompt_answers_are_stored_on_the_authorization_and_the_sale(make: Any, doc: dict[str, Any]) -> None:
    fleet = make(prompting(doc, ["odometer", "vehicle", "driver_id"]))
    answer = fleet.approved(prompts={"odometer": "120450", "vehicle": "AB12", "driver_id": "0042"})
    auth = fleet.one(Authorization, Authorization.id == answer.auth_id)
    assert (auth.odometer_km, auth.vehicle_id, auth.driver_id) == (120_450, 1, 1)
    vehicle = fleet.one(Vehicle, Vehicle.id == 1)
    assert (vehicle.odometer_km, vehicle.odometer_at) == (120_450, NOW)     # the vehicle's last reading now
    sale = fleet.sell(answer, 2000)
    tx = fleet.one(Transaction, Transaction.sale_id == sale["sale_id"])
    assert (tx.odometer_km, tx.vehicle_id, tx.driver_id, tx.account_id) == (120_450, 1, 1, 1)


@pytest.mark.parametrize(("answers", "reason"), [
    ({"vehicle": "XX00", "driver_id": "0042"}, R.VEHICLE_UNKNOWN),
    ({"vehicle": "ZZ99", "driver_id": "0042"}, R.VEHICLE_UNKNOWN),          # another account's vehicle
    ({"vehicle": "AB12", "driver_id": "0043"}, R.DRIVER_UNKNOWN),
    ({"vehicle": "AB12", "driver_id": "0099"}, R.DRIVER_UNKNOWN),           # another account's driver
])
def test_unknown_vehicle_or_driver(make: Any, doc: dict[str, Any], answers: dict[str, str],
                                   reason: R) -> None:
    fleet = make(prompting(doc, ["vehicle", "driver_id"]))
    assert fleet.auth(prompts=answers).reason == reason
    assert fleet.count(Hold) == 0


def test_odometer_backwards_and_implausible_are_refused_accepted_reading_becomes_the_last(
        make: Any, doc: dict[str, Any]) -> None:
    fleet = make(prompting(doc, ["odometer", "vehicle"]))
    assert fleet.auth(prompts={"odometer": "119999", "vehicle": "AB12"}).reason == R.ODOMETER_INVALID
    fleet.approved(prompts={"odometer": "121000", "vehicle": "AB12"})
    # the accepted reading is now the last: 120,500 is backwards from it, though not from the seeded one
    assert fleet.auth(prompts={"odometer": "120500", "vehicle": "AB12"}).reason == R.ODOMETER_INVALID
    # 2,000 km per started day since 10:00 today: 3,001 km an hour later is implausible
    later = NOW + dt.timedelta(hours=1)
    assert fleet.auth(prompts={"odometer": "124001", "vehicle": "AB12"}, now=later).reason == \
        R.ODOMETER_INVALID
    assert fleet.one(Vehicle, Vehicle.id == 1).odometer_km == 121_000      # refused readings are not kept
    fleet.approved(prompts={"odometer": "123000", "vehicle": "AB12"}, now=later)
    # two days on, 3 started days: up to 6,000 km more is plausible
    assert fleet.approved(prompts={"odometer": "129000", "vehicle": "AB12"}, now=later + dt.timedelta(days=2))
    assert fleet.one(Vehicle, Vehicle.id == 1).odometer_km == 129_000


def test_odometer_checked_against_the_cards_own_vehicle(make: Any, doc: dict[str, Any]) -> None:
    prompting(doc, ["odometer"])
    doc["cards"][0]["vehicle"] = 1                  # seeded at 120,000 km
    fleet = make(doc)
    assert fleet.auth(prompts={"odometer": "100"}).reason == R.ODOMETER_INVALID
    answer = fleet.approved(prompts={"odometer": "120100"})
    assert fleet.one(Authorization, Authorization.id == answer.auth_id).vehicle_id == 1
    assert fleet.one(Vehicle, Vehicle.id == 1).odometer_km == 120_100


def test_a_card_bound_to_a_vehicle_fuels_that_vehicle_only(make: Any, doc: dict[str, Any]) -> None:
    prompting(doc, ["vehicle"])
    doc["cards"][0]["vehicle"] = 1
    fleet = make(doc)
    assert fleet.auth(prompts={"vehicle": "CD34"}).reason == R.VEHICLE_UNKNOWN     # the account's, not its
    answer = fleet.approved(prompts={"vehicle": "AB12"})
    assert fleet.one(Authorization, Authorization.id == answer.auth_id).vehicle_id == 1


# -- PIN -----------------------------------------------------------------------------------------------------
def test_wrong_pins_are_counted_and_the_third_blocks_the_card(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    first = fleet.auth(pin="1111")
    assert (first.reason, first.pin_tries_left) == (R.WRONG_PIN, 2)
    fleet.approved()                                # a right one clears the count
    assert fleet.card().pin_tries == 0
    assert fleet.auth(pin="1111").pin_tries_left == 2
    assert fleet.auth(pin="2222").pin_tries_left == 1
    assert fleet.auth(pin="3333").reason == R.PIN_TRIES_EXCEEDED
    assert fleet.card().status == "temp_blocked"      # the lead's choice (88ecf5f): an operator unblocks it
    assert fleet.auth().reason == R.CARD_BLOCKED        # the right PIN no longer helps
    assert fleet.count(Hold, Hold.released.is_(False)) == 1    # only the one approval holds anything


def test_tag_without_pin_is_approved_with_an_empty_pin_block(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"] = [{"number": TAG, "account": 1, "medium": "tag", "expiry": "2912"}]
    fleet = make(doc)
    answer = fleet.approved(TAG, None, medium="tag")
    assert answer.card_masked == mask_number(TAG) == "U**********E5F6"


def test_tag_with_pin_binds_the_pin_block_to_its_uids_pan(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"] = [{"number": TAG, "account": 1, "medium": "tag", "expiry": "2912", "pin": "4321"}]
    fleet = make(doc)
    assert fleet.auth(TAG, None, medium="tag").prompts == ("pin",)
    # bound to anything but pin_pan (the UID's decimal value) the block does not decipher to the PIN
    assert fleet.auth(TAG, "4321", medium="tag", block_pan=CARD).reason == R.WRONG_PIN
    fleet.approved(TAG, "4321", medium="tag")
    assert fleet.card(TAG).pin_tries == 0


# -- card and account status ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["new", "temp_blocked", "blocked", "lost", "stolen", "replaced",
                                    "withdrawn"])
def test_only_an_active_card_authorizes(make: Any, doc: dict[str, Any], status: str) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"][0]["status"] = status
    fleet = make(doc)
    answer = fleet.auth()
    assert (answer.approved, answer.reason) == (False, R.CARD_BLOCKED)
    assert fleet.count(Hold) == 0 and fleet.card().pin_tries == 0


def test_card_past_its_expiry_month_is_declined_as_expired(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"][0]["expiry"] = "2611"              # November 2026; NOW is in December
    doc["cards"].append({"number": CARD2, "account": 1, "pin": "1234", "expiry": "2612"})
    fleet = make(doc)
    assert fleet.auth().reason == R.CARD_EXPIRED
    fleet.approved(CARD2)                           # valid through the last day of its month
    assert fleet.auth(CARD2, now=dt.datetime(2027, 1, 1, 0, 0)).reason == R.CARD_EXPIRED


def test_closed_account_declines_its_cards_as_blocked(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    fleet.set(Account, Account.id == 1, status="closed")
    assert fleet.auth().reason == R.CARD_BLOCKED
    assert fleet.count(Hold) == 0


# -- wallets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("products", "offer"), [
    (["019"], {"diesel"}),                                  # a 3-digit Conexxus code (Product.code3)
    (["001-018"], {"petrol95"}),                            # a range: 001 in it, 019 and 062 not
    (["001-099"], {"diesel", "petrol95", "adblue"}),
    (["adblue"], {"adblue"}),                               # the network's own product code
    (["062", "001"], {"petrol95", "adblue"}),
    ([], {"diesel", "petrol95", "adblue"}),                 # none listed: any
])
def test_wallet_products_decide_the_nozzles_offered(make: Any, doc: dict[str, Any], products: list[str],
                                                    offer: set[str]) -> None:
    doc["wallets"] = [litres_wallet(products=products)]
    fleet = make(doc)
    answer = fleet.approved()
    assert set(offered(answer)) == offer
    assert set(answer.nozzles) == {a.nozzle for a in answer.allowances}
    with fleet.sessions() as s:
        assert {a.product for a in s.scalars(select(AuthAllowance))} == offer


def test_no_wallet_for_any_nozzle_is_product_not_allowed(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(products=["400-599"])]  # merchandise only
    fleet = make(doc)
    assert fleet.auth().reason == R.PRODUCT_NOT_ALLOWED


@pytest.mark.parametrize("stations", [["ST-2"], ["group:north"]])
def test_wallet_stations_by_id_and_group(make: Any, doc: dict[str, Any], stations: list[str]) -> None:
    doc["wallets"] = [litres_wallet(stations=stations)]
    fleet = make(doc)
    assert fleet.auth().reason == R.STATION_NOT_ALLOWED
    answer = fleet.approved(terminal="T-2", station="ST-2")
    assert set(offered(answer)) == {"diesel", "petrol95"}


def test_station_wallet_and_an_any_station_wallet(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, products=["diesel"], stations=["group:north"]),
                      litres_wallet(2, products=["petrol95"], priority=1)]
    fleet = make(doc)
    assert set(offered(fleet.approved())) == {"petrol95"}             # diesel is paid only at ST-2
    assert set(offered(fleet.approved(terminal="T-2", station="ST-2"))) == {"diesel", "petrol95"}


def paying(fleet: Fleet, answer: m.AuthAnswer) -> dict[str, int]:
    """product -> the wallet the authorization chose to pay it."""
    return {a.product: a.wallet_id for a in fleet.all(AuthAllowance, AuthAllowance.auth_id == answer.auth_id)}


def test_priority_order_lower_first_ties_by_id(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, priority=5), litres_wallet(2, priority=1),
                      litres_wallet(3, priority=1)]
    fleet = make(doc)
    answer = fleet.approved()
    assert set(paying(fleet, answer).values()) == {2}
    holds = fleet.all(Hold, Hold.auth_id == answer.auth_id)
    assert [(h.wallet_id, h.amount) for h in holds] == [(2, MAX_FILL_CL)]


def test_expired_and_closed_wallets_are_skipped(make: Any, doc: dict[str, Any]) -> None:
    doc["accounts"][0]["timezone"] = "Pacific/Auckland"     # UTC+13 in December: 10:00 UTC is 23:00 local
    doc["wallets"] = [litres_wallet(1, priority=0, expires_on=dt.date(2026, 12, 1)),
                      litres_wallet(2, priority=1, expires_on=dt.date(2026, 12, 2)),
                      litres_wallet(3, priority=2)]
    fleet = make(doc)
    assert set(paying(fleet, fleet.approved()).values()) == {2}      # usable through its day, local time
    # 11:00 UTC is already 3 December in Auckland, while still 2 December in UTC
    assert set(paying(fleet, fleet.approved(now=NOW + dt.timedelta(hours=1))).values()) == {3}
    fleet.set(Wallet, Wallet.id == 3, status="closed")
    assert fleet.auth(now=NOW + dt.timedelta(hours=1)).reason == R.PRODUCT_NOT_ALLOWED


def test_money_wallet_allows_the_volume_its_cents_buy_at_each_price(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [{"id": 1, "account": 1, "unit": "money", "mode": "prepaid", "topup": 5000}]
    fleet = make(doc)
    answer = fleet.approved()
    by_product = {a.product: (a.volume_cl, a.amount_cents) for a in answer.allowances}
    for product, (volume, amount) in by_product.items():
        price = PRICES[product]
        assert amount == rules.amount_of(volume, price) <= 5000 < rules.amount_of(volume + 1, price)
    assert by_product["diesel"] == (3014, 5000)              # 30.14 L at 1.659 is 50.00 (half up)
    assert answer.allowed_cl == max(v for v, _ in by_product.values())
    holds = fleet.all(Hold, Hold.auth_id == answer.auth_id)
    assert [(h.wallet_id, h.amount) for h in holds] == [(1, 5000)]   # cents held on a money wallet


def test_prepaid_wallet_with_nothing_available_is_insufficient_funds(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(topup=0)]
    fleet = make(doc)
    assert fleet.auth().reason == R.INSUFFICIENT_FUNDS


def test_postpaid_wallet_spends_its_credit_line(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(topup=0, mode="postpaid", credit=8000, products=["diesel"])]
    fleet = make(doc)
    answer = fleet.approved()
    assert offered(answer) == {"diesel": 8000}
    fleet.sell(answer, 6000)
    assert fleet.balance(1) == -6000
    assert offered(fleet.approved()) == {"diesel": 2000}
    assert fleet.auth().reason == R.INSUFFICIENT_FUNDS          # the last 20 L are held by the one before


def test_card_tied_to_one_wallet_spends_only_it(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, priority=0), litres_wallet(2, topup=1000, priority=9)]
    doc["cards"].append({"number": CARD2, "wallet": 2, "pin": "1234", "expiry": "2912"})
    fleet = make(doc)
    answer = fleet.approved(CARD2)
    assert set(paying(fleet, answer).values()) == {2}
    assert offered(answer) == {"diesel": 1000, "petrol95": 1000, "adblue": 1000}
    assert fleet.auth(CARD2).reason == R.INSUFFICIENT_FUNDS      # wallet 1's 1,000 L are not its to spend


# -- limits --------------------------------------------------------------------------------------------------
def limit(scope: str, period: str, unit: str, maximum: int, scope_id: int = 1) -> dict[str, Any]:
    return {"scope": scope, "id": scope_id, "period": period, "unit": unit, "maximum": maximum}


def diesel_fleet(make: Any, doc: dict[str, Any], *limits: dict[str, Any], topup: int = 100_000) -> Fleet:
    """A litre wallet for diesel only (nozzle 1 of pump 1), two cards (ids 1 and 2), the limits given."""
    doc["wallets"] = [litres_wallet(products=["diesel"], topup=topup)]
    doc["cards"].append({"number": CARD2, "account": 1, "pin": "1234", "expiry": "2912"})
    doc["limits"] = list(limits)
    fleet: Fleet = make(doc)
    return fleet


def test_allowance_is_the_days_remainder_not_the_months(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("account", "day", "volume", 5000),
                         limit("account", "month", "volume", 100_000))
    fleet.sell(fleet.approved(), 3000)
    assert offered(fleet.approved(CARD2)) == {"diesel": 2000}


def test_next_day_starts_a_new_day_within_the_month(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("account", "day", "volume", 5000),
                         limit("account", "month", "volume", 8000))
    fleet.sell(fleet.approved(), 5000)
    assert fleet.auth().reason == R.LIMIT_EXHAUSTED
    assert offered(fleet.approved(now=NOW + dt.timedelta(days=1))) == {"diesel": 3000}   # the month's rest


def test_per_sale_limit_does_not_accumulate(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "sale", "volume", 2500))
    first = fleet.approved()
    assert offered(first) == {"diesel": 2500}
    fleet.sell(first, 2500)
    assert offered(fleet.approved()) == {"diesel": 2500}


def test_day_count_limit_counts_open_and_settled_authorizations(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "day", "count", 2))
    first, _ = fleet.approved(), fleet.approved()
    assert fleet.auth().reason == R.LIMIT_EXHAUSTED            # two open
    fleet.sell(first, 1000)
    assert fleet.auth().reason == R.LIMIT_EXHAUSTED            # one settled, one open
    fleet.approved(CARD2)                                      # the limit is the card's alone
    assert fleet.approved(now=NOW + dt.timedelta(days=1))      # a new day


def test_day_count_limit_with_two_settled_sales(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("account", "day", "count", 2))
    fleet.sell(fleet.approved(), 1000)
    fleet.sell(fleet.approved(CARD2), 1000)
    assert fleet.auth().reason == R.LIMIT_EXHAUSTED
    assert fleet.auth(CARD2).reason == R.LIMIT_EXHAUSTED


def test_lifetime_and_year_limits_of_a_card_carry_over_months(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "lifetime", "volume", 5000),
                         limit("card", "year", "volume", 4000))
    fleet.sell(fleet.approved(), 3000)
    assert offered(fleet.approved(now=NOW + dt.timedelta(days=20))) == {"diesel": 1000}     # the year's
    # January: a new year, the lifetime's rest (the December authorization above lapsed unused)
    assert offered(fleet.approved(now=dt.datetime(2027, 1, 5, 10))) == {"diesel": 2000}


def test_money_limit_on_a_volume_wallet(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["limits"] = [limit("account", "day", "money", 3318)]
    fleet = make(doc)
    answer = fleet.approved()
    for a in answer.allowances:
        assert a.volume_cl == rules.volume_of(3318, PRICES[a.product])
        assert a.amount_cents == rules.amount_of(a.volume_cl, PRICES[a.product]) <= 3318
    assert offered(answer)["diesel"] == 2000                   # 20 L of diesel at 1.659 is 33.18
    holds = fleet.all(Hold, Hold.auth_id == answer.auth_id)
    assert [(h.wallet_id, h.amount) for h in holds] == [(1, answer.allowed_cl)]   # litres held, not cents


@pytest.mark.parametrize(("card_cl", "account_cl"), [(3000, 5000), (5000, 3000)])
def test_card_and_account_limits_both_apply_the_smaller_wins(make: Any, doc: dict[str, Any], card_cl: int,
                                                             account_cl: int) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "day", "volume", card_cl),
                         limit("account", "day", "volume", account_cl))
    assert offered(fleet.approved()) == {"diesel": 3000}


def test_account_limit_shared_by_its_cards_card_limit_not(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "day", "volume", 3000),
                         limit("account", "day", "volume", 5000))
    fleet.sell(fleet.approved(), 3000)
    assert fleet.auth().reason == R.LIMIT_EXHAUSTED            # the card's day is used up
    assert offered(fleet.approved(CARD2)) == {"diesel": 2000}  # card 2 has no limit; the account's rest


def test_open_authorizations_count_in_usage_until_they_settle_or_lapse(make: Any,
                                                                       doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("account", "day", "volume", 5000))
    first = fleet.approved()
    assert offered(first) == {"diesel": 5000}
    assert fleet.auth(CARD2).reason == R.LIMIT_EXHAUSTED       # the open one may still take all of it
    fleet.sell(first, 2000)
    assert offered(fleet.approved(CARD2)) == {"diesel": 3000}
    # that one lapses unused after AUTH_TTL: its 30 L count no more
    assert offered(fleet.approved(now=NOW + dt.timedelta(minutes=31))) == {"diesel": 3000}


# -- time windows --------------------------------------------------------------------------------------------
MON_FRI = 0b0011111
EVERY_DAY = 0b1111111


def window(scope: str, weekdays: int, start: str, end: str) -> dict[str, Any]:
    def minute(hhmm: str) -> int:
        return int(hhmm[:2]) * 60 + int(hhmm[3:])
    return {"scope": scope, "id": 1, "weekdays": weekdays, "start_minute": minute(start),
            "end_minute": minute(end)}


def at(day: int, hhmm: str) -> dt.datetime:
    """A time (UTC) in the week of NOW: day 30 is Monday 30 November 2026, 1 to 6 December follow."""
    month = 11 if day == 30 else 12
    return dt.datetime(2026, month, day, int(hhmm[:2]), int(hhmm[3:]))


@pytest.mark.parametrize(("when", "ok"), [
    (at(2, "10:00"), True), (at(2, "05:30"), False),         # account's window not yet open, card's open
    (at(2, "20:30"), False),                                  # account's closed, card's still open
    (at(2, "20:59"), False), (at(2, "06:00"), True), (at(2, "19:59"), True),
    (at(5, "10:00"), False),                                  # Saturday: the account's window is Mon-Fri
    (at(6, "10:00"), False),
])
def test_card_and_account_windows_must_both_allow(make: Any, doc: dict[str, Any], when: dt.datetime,
                                                  ok: bool) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["windows"] = [window("account", MON_FRI, "06:00", "20:00"),
                      window("card", EVERY_DAY, "05:00", "21:00")]
    fleet = make(doc)
    answer = fleet.auth(now=when)
    assert answer.approved is ok
    if not ok:
        assert answer.reason == R.OUTSIDE_TIME_WINDOW


def test_card_window_alone_refuses(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["windows"] = [window("account", EVERY_DAY, "00:00", "00:00"),       # start == end: all day
                      window("card", EVERY_DAY, "08:00", "09:00")]
    fleet = make(doc)
    assert fleet.auth().reason == R.OUTSIDE_TIME_WINDOW
    fleet.approved(now=at(2, "08:30"))


@pytest.mark.parametrize(("when", "ok"), [
    (at(30, "23:00"), True), (at(1, "03:00"), True),          # Monday evening, and Tuesday morning after it
    (at(30, "21:59"), False), (at(1, "06:00"), False),        # the end minute is excluded
    (at(30, "03:00"), False),                                 # Monday morning belongs to Sunday's night
    (at(1, "23:00"), False),                                  # Tuesday evening: the bit is Monday's only
])
def test_midnight_spanning_window(make: Any, doc: dict[str, Any], when: dt.datetime, ok: bool) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["windows"] = [window("card", 0b0000001, "22:00", "06:00")]
    fleet = make(doc)
    assert fleet.auth(now=when).approved is ok


def test_windows_are_in_the_accounts_time_zone(make: Any, doc: dict[str, Any]) -> None:
    doc["accounts"][0]["timezone"] = "America/New_York"       # UTC-5 in December
    doc["wallets"] = [litres_wallet()]
    doc["windows"] = [window("account", MON_FRI, "08:00", "12:00")]
    fleet = make(doc)
    assert fleet.auth(now=at(2, "10:00")).reason == R.OUTSIDE_TIME_WINDOW      # 05:00 in New York
    fleet.approved(now=at(2, "14:00"))                                        # 09:00 there
    assert fleet.auth(now=at(2, "17:00")).reason == R.OUTSIDE_TIME_WINDOW      # 12:00 there
    assert fleet.auth(now=at(5, "14:00")).reason == R.OUTSIDE_TIME_WINDOW      # Saturday 09:00 there


def test_weekday_is_the_accounts_local_one(make: Any, doc: dict[str, Any]) -> None:
    doc["accounts"][0]["timezone"] = "America/New_York"
    doc["wallets"] = [litres_wallet()]
    doc["windows"] = [window("account", MON_FRI, "20:00", "23:00")]
    fleet = make(doc)
    fleet.approved(now=at(5, "03:00"))              # Saturday in UTC, Friday 22:00 in New York
    assert fleet.auth(now=at(6, "03:00")).reason == R.OUTSIDE_TIME_WINDOW      # Saturday 22:00 there


# -- holds ---------------------------------------------------------------------------------------------------
def test_two_authorizations_race_for_the_last_30_litres(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, limit("card", "sale", "volume", 1000), topup=3000)
    first = fleet.approved()
    assert offered(first) == {"diesel": 1000}                  # card 1's per-sale limit
    second = fleet.approved(CARD2)
    assert offered(second) == {"diesel": 2000}                 # what the first left
    assert fleet.auth(CARD2).reason == R.INSUFFICIENT_FUNDS
    assert sum(h.amount for h in fleet.all(Hold, Hold.released.is_(False))) == 3000
    assert fleet.available(1) == 0


def test_completion_releases_the_rest_of_the_hold(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, topup=3000)
    answer = fleet.approved()
    assert fleet.available(1) == 0
    fleet.sell(answer, 2000)
    assert (fleet.balance(1), fleet.available(1)) == (1000, 1000)
    assert all(h.released for h in fleet.all(Hold, Hold.auth_id == answer.auth_id))
    assert offered(fleet.approved(CARD2)) == {"diesel": 1000}


def test_a_lapsed_authorization_holds_nothing(make: Any, doc: dict[str, Any]) -> None:
    fleet = diesel_fleet(make, doc, topup=3000)
    fleet.approved()
    assert fleet.auth(CARD2).reason == R.INSUFFICIENT_FUNDS
    lapsed = NOW + dt.timedelta(minutes=30)                    # AUTH_TTL: held until, not at, 30 minutes
    assert fleet.available(1, lapsed) == 3000
    assert offered(fleet.approved(CARD2, now=lapsed)) == {"diesel": 3000}


def test_an_expired_card_is_declined_and_left_to_the_sweep(make: Any, doc: dict[str, Any]) -> None:
    """An authorization reads, it does not mark: the hourly sweep (registry.fleet.sweep) sets "expired"."""
    doc["wallets"] = [litres_wallet()]
    doc["cards"][0]["expiry"] = "2611"
    fleet = make(doc)
    assert fleet.auth().reason == R.CARD_EXPIRED
    assert fleet.card().status == "active"


def test_threads_racing_for_the_last_30_litres_never_hold_more(make: Any, doc: dict[str, Any]) -> None:
    """Six sessions at once, three authorizations each, for a wallet of 30 L and 5 L a sale: each gets the
    account's lock in turn (SQLite's write lock), so exactly six are approved and together hold 30 L."""
    fleet = diesel_fleet(make, doc, limit("account", "sale", "volume", 500), topup=3000)
    requests = [[fleet.request() for _ in range(3)] for _ in range(6)]
    start = threading.Barrier(len(requests))
    answers: list[m.AuthAnswer] = []
    errors: list[Exception] = []

    def run(batch: list[dict[str, Any]]) -> None:
        try:
            start.wait()
            for req in batch:
                with fleet.sessions() as s:
                    answers.append(authorize(s, fleet.keys, req, NOW))
        except Exception as exc:  # noqa: BLE001 -- reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    approved = [a for a in answers if a.approved]
    assert len(approved) == 6 and all(a.allowed_cl == 500 for a in approved)
    assert {a.reason for a in answers if not a.approved} == {R.INSUFFICIENT_FUNDS}
    assert sum(h.amount for h in fleet.all(Hold)) == 3000
    assert fleet.available(1) == 0


def test_week_limit_in_the_accounts_zone(make: Any, doc: dict[str, Any]) -> None:
    """Sunday 23:30 in New York is Monday 04:30 UTC: the sale counts in the week it was made there."""
    doc["accounts"][0]["timezone"] = "America/New_York"
    fleet = diesel_fleet(make, doc, limit("account", "week", "volume", 5000))
    sunday_night = dt.datetime(2026, 12, 7, 4, 0)             # Sunday 6 December, 23:00 in New York
    answer = fleet.approved(now=sunday_night)
    sale = fleet.sale_doc(answer.auth_id, 5000, finished=sunday_night + dt.timedelta(minutes=30))
    assert fleet.record(sale, now=sunday_night + dt.timedelta(minutes=31))["reason"] == ""
    assert fleet.auth(now=sunday_night + dt.timedelta(minutes=45)).reason == R.LIMIT_EXHAUSTED
    monday = sunday_night + dt.timedelta(hours=1, minutes=30)   # 00:30 on Monday there: a new ISO week
    assert offered(fleet.approved(now=monday)) == {"diesel": 5000}


# -- one request delivered twice at once (MQTT QoS 1 may deliver a message again) ----------------------------
pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture), for the test below


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg_env.database_url(request, tmp_path / "db")


def test_a_request_delivered_twice_at_once_is_approved_once(database: str, tmp_path: Path) -> None:
    """The second delivery passes the request_id check while the first holds the account's lock; once it
    has the lock it must find the first one's authorization: a decline, not a duplicate key error."""
    seed = base_seed()
    seed["wallets"] = [litres_wallet()]
    fleet = Fleet(tmp_path / "fleet", seed, None if database.startswith("sqlite") else database)
    try:
        req = fleet.request()
        answers: list[m.AuthAnswer] = []
        errors: list[Exception] = []
        with fleet.sessions() as first:
            ledger.lock_account(first, 1)              # the first delivery has the lock

            def second() -> None:
                try:
                    with fleet.sessions() as s:
                        answers.append(authorize(s, fleet.keys, req, NOW))
                except Exception as exc:  # noqa: BLE001 -- reported below, not lost in the thread
                    errors.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            time.sleep(0.5)                            # the second is past its checks, waiting for the lock
            assert authorize(first, fleet.keys, req, NOW).approved
        thread.join()
        assert [type(e).__name__ for e in errors] == []
        assert [(a.approved, a.reason) for a in answers] == [(False, R.DO_NOT_HONOUR)]
        assert fleet.count(Authorization) == 1 and fleet.count(Hold) == 1
    finally:
        fleet.engine.dispose()
