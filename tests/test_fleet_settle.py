"""Fleet settlement (registry.fleet.settle through registry.service.record_sale and record_sales) on a real
SQLite registry: which wallet a sale debits, the usage it counts, what ends its holds, what is held, and
offline sales found by their sealed card number. The Fleet environment is tests/test_fleet_authorize.py's.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from contracts.messages import AuthAnswer
from contracts.reasons import DeclineReason as R
from registry.fleet import ledger, rules
from registry.models import Authorization, Card, Hold, Movement, Transaction, Usage
from tests.test_fleet_authorize import (
    CARD,
    CARD2,
    NOW,
    PRICES,
    TAG,
    Fleet,
    base_seed,
    limit,
    litres_wallet,
    offered,
)
from tests.test_fleet_authorize import make as fleet_fixture

make = fleet_fixture                             # the registries of test_fleet_authorize, by name

LATER = NOW + dt.timedelta(minutes=6)          # when the registry receives the sales below




@pytest.fixture
def doc() -> dict[str, Any]:
    return base_seed()


def two_wallets(make: Any, doc: dict[str, Any]) -> Fleet:
    """Diesel from a litre wallet (1: 1,000 L), everything else from a money wallet (2: 500.00)."""
    doc["wallets"] = [litres_wallet(1, products=["diesel"]),
                      {"id": 2, "account": 1, "unit": "money", "mode": "prepaid", "topup": 50_000,
                       "priority": 1}]
    doc["cards"].append({"number": CARD2, "account": 1, "pin": "1234", "expiry": "2912"})
    fleet: Fleet = make(doc)
    return fleet


def sale_movements(fleet: Fleet) -> list[Movement]:
    return fleet.all(Movement, Movement.kind == "sale")


def tx(fleet: Fleet, sale: dict[str, Any]) -> Transaction:
    found: Transaction = fleet.one(Transaction, Transaction.sale_id == sale["sale_id"])
    return found


def sound(fleet: Fleet) -> None:
    """Every balance is the sum of its movements."""
    with fleet.sessions() as s:
        assert ledger.check(s) == []


def open_holds(fleet: Fleet, answer: AuthAnswer) -> list[Hold]:
    return fleet.all(Hold, Hold.auth_id == answer.auth_id, Hold.released.is_(False))


# -- online sales --------------------------------------------------------------------------------------------
def test_a_sale_debits_the_wallet_its_authorization_chose_for_the_product(make: Any,
                                                                         doc: dict[str, Any]) -> None:
    fleet = two_wallets(make, doc)
    answer = fleet.approved()
    diesel = fleet.sell(answer, 2000, nozzle=1)
    assert (fleet.balance(1), fleet.balance(2)) == (98_000, 50_000)          # litres from the litre wallet
    [movement] = sale_movements(fleet)
    assert (movement.key, movement.wallet_id, movement.amount, movement.balance_after) == \
        (f"sale:{diesel['sale_id']}", 1, -2000, 98_000)
    assert (movement.sale_id, movement.auth_id) == (diesel["sale_id"], answer.auth_id)
    assert (tx(fleet, diesel).wallet_id, tx(fleet, diesel).held) == (1, False)
    petrol = fleet.sell(fleet.approved(), 1000, nozzle=2)
    cents = rules.amount_of(1000, PRICES["petrol95"])
    assert (fleet.balance(1), fleet.balance(2)) == (98_000, 50_000 - cents)  # cents from the money wallet
    assert tx(fleet, petrol).wallet_id == 2
    assert len(sale_movements(fleet)) == 2
    assert fleet.count(Hold, Hold.released.is_(False)) == 0
    sound(fleet)


def usage_rows(fleet: Fleet, scope: str, scope_id: int) -> dict[str, tuple[int, int, int]]:
    return {u.period_key: (u.amount_cents, u.volume_cl, u.count)
            for u in fleet.all(Usage, Usage.scope == scope, Usage.scope_id == scope_id)}


def test_a_sale_counts_in_every_period_of_the_card_and_account_in_the_accounts_zone(
        make: Any, doc: dict[str, Any]) -> None:
    doc["accounts"][0]["timezone"] = "Pacific/Auckland"      # UTC+13 in December
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    eve = dt.datetime(2026, 12, 31, 11, 30)                   # 1 January 2027, 00:30 in Auckland
    answer = fleet.approved(now=eve)
    sale = fleet.sale_doc(answer.auth_id, 2000, finished=eve + dt.timedelta(minutes=5))
    assert fleet.record(sale, now=eve + dt.timedelta(minutes=6))["reason"] == ""
    figures = (rules.amount_of(2000, PRICES["diesel"]), 2000, 1)
    # 2027-01-01 is a Friday of ISO week 53 of 2026 (ISO 8601 weeks, datetime.isocalendar)
    expected = {key: figures for key in ("D2027-01-01", "W2026-53", "M2027-01", "Y2027", "L")}
    assert usage_rows(fleet, "account", 1) == expected
    assert usage_rows(fleet, "card", fleet.card().id) == expected


def test_a_sale_received_twice_books_once(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    sale = fleet.sell(fleet.approved(), 2000)
    assert fleet.record(sale)["status"] == "duplicate"
    assert fleet.record_batch([sale, sale]) == [{"sale_id": sale["sale_id"], "status": "duplicate",
                                                 "reason": ""}] * 2
    assert fleet.balance(1) == 98_000
    assert len(sale_movements(fleet)) == 1
    assert usage_rows(fleet, "account", 1)["L"][2] == 1
    sound(fleet)


def test_a_product_the_authorization_did_not_allow_is_held_and_debits_nothing(make: Any,
                                                                              doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(products=["diesel"])]
    fleet = make(doc)
    answer = fleet.approved()
    assert set(offered(answer)) == {"diesel"}
    sale = fleet.sale_doc(answer.auth_id, 1000, nozzle=2)       # petrol95 lifted anyway
    assert fleet.record(sale) == {"sale_id": sale["sale_id"], "status": "stored", "reason": "held"}
    stored = tx(fleet, sale)
    assert stored.held and "product_not_authorized" in stored.flags.split(",")
    assert sale_movements(fleet) == [] and fleet.balance(1) == 100_000
    assert open_holds(fleet, answer) == []
    assert usage_rows(fleet, "account", 1) == {}


def test_a_held_sale_debits_nothing_but_ends_the_holds(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(topup=3000)]
    fleet = make(doc)
    answer = fleet.approved()
    assert fleet.available(1, LATER) == 0
    sale = fleet.sale_doc(answer.auth_id, 2000, finished=NOW + dt.timedelta(days=1))   # a clock far ahead
    assert fleet.record(sale)["reason"] == "held"
    assert "finished_in_future" in tx(fleet, sale).flags.split(",")
    assert sale_movements(fleet) == [] and usage_rows(fleet, "account", 1) == {}
    assert open_holds(fleet, answer) == [] and fleet.available(1, LATER) == 3000
    assert fleet.one(Authorization, Authorization.id == answer.auth_id).status == "completed"


def test_a_sale_at_another_price_is_booked_as_dispensed_and_flagged(make: Any, doc: dict[str, Any]) -> None:
    """The registry's price changed while the terminal still sold at its own: the fuel was taken."""
    doc["wallets"] = [litres_wallet(topup=3000)]
    fleet = make(doc)
    answer = fleet.approved()
    sale = fleet.sale_doc(answer.auth_id, 2000, price_milli=1500, amount_cents=3000)   # not the nozzle's
    ack = fleet.record(sale)
    assert (ack["status"], ack["reason"]) == ("stored", "")
    stored = tx(fleet, sale)
    assert not stored.held and "price_mismatch" in stored.flags.split(",")
    assert [m.amount for m in sale_movements(fleet)] == [-2000] and fleet.available(1, LATER) == 1000


def test_a_second_sale_on_one_authorization_is_held_and_not_debited(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    answer = fleet.approved()
    fleet.sell(answer, 2000)
    again = fleet.sale_doc(answer.auth_id, 2000)
    assert fleet.record(again)["reason"] == "held"
    assert "authorization_reused" in tx(fleet, again).flags.split(",")
    assert fleet.balance(1) == 98_000 and len(sale_movements(fleet)) == 1


def test_a_sale_of_nothing_releases_the_hold_and_debits_nothing(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(topup=3000)]
    doc["limits"] = [{"scope": "card", "id": 1, "period": "day", "unit": "count", "maximum": 1}]
    fleet = make(doc)
    answer = fleet.approved()
    release = fleet.sale_doc(answer.auth_id, 0, nozzle=0, flags=["cancelled_after_approval"])
    assert fleet.record(release) == {"sale_id": release["sale_id"], "status": "stored", "reason": ""}
    assert open_holds(fleet, answer) == [] and fleet.available(1, LATER) == 3000
    assert sale_movements(fleet) == [] and usage_rows(fleet, "account", 1) == {}
    # nothing was sold: the day's one sale is still there to be had
    assert offered(fleet.approved(now=LATER))["diesel"] == 3000


def test_a_sale_after_its_authorization_lapsed_is_still_debited(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    answer = fleet.approved()
    sale = fleet.sale_doc(answer.auth_id, 2000)
    assert fleet.record(sale, now=NOW + dt.timedelta(hours=2))["reason"] == ""   # kept by the terminal
    assert fleet.balance(1) == 98_000


# -- offline sales -------------------------------------------------------------------------------------------
def test_an_offline_sale_debits_the_cards_account(make: Any, doc: dict[str, Any]) -> None:
    fleet = two_wallets(make, doc)
    sale = fleet.offline_doc(CARD2, 2000)
    assert fleet.record(sale) == {"sale_id": sale["sale_id"], "status": "stored", "reason": ""}
    stored = tx(fleet, sale)
    assert (stored.card_id, stored.account_id, stored.wallet_id, stored.held) == \
        (fleet.card(CARD2).id, 1, 1, False)
    assert "offline" in stored.flags.split(",") and "overdrawn" not in stored.flags.split(",")
    assert fleet.balance(1) == 98_000
    [movement] = sale_movements(fleet)
    assert (movement.key, movement.auth_id) == (f"sale:{sale['sale_id']}", None)
    assert usage_rows(fleet, "card", fleet.card(CARD2).id)["L"] == (rules.amount_of(2000, 1659), 2000, 1)
    sound(fleet)


def test_an_offline_sale_that_fails_a_check_is_held_with_its_card_and_account(make: Any,
                                                                             doc: dict[str, Any]) -> None:
    """Held (a clock far ahead), nothing debited, but never unattributed: an operator books it."""
    fleet = two_wallets(make, doc)
    sale = fleet.offline_doc(CARD2, 2000, finished=NOW + dt.timedelta(days=1))
    assert fleet.record(sale)["reason"] == "held"
    stored = tx(fleet, sale)
    assert (stored.card_id, stored.account_id, stored.held) == (fleet.card(CARD2).id, 1, True)
    assert sale_movements(fleet) == [] and fleet.balance(1) == 100_000


def test_an_offline_sale_at_an_old_price_is_booked_and_flagged(make: Any, doc: dict[str, Any]) -> None:
    """The registry changed the price while the terminal was offline: what the pump showed is charged."""
    fleet = two_wallets(make, doc)
    sale = fleet.offline_doc(CARD2, 2000, price_milli=1500, amount_cents=3000)
    assert fleet.record(sale)["reason"] == ""
    stored = tx(fleet, sale)
    assert not stored.held and {"offline", "price_mismatch"} <= set(stored.flags.split(","))
    assert fleet.balance(1) == 98_000


def test_an_offline_sale_past_what_online_would_allow_is_booked_and_flagged(make: Any,
                                                                          doc: dict[str, Any]) -> None:
    """Petrol on a diesel-only account, past its day limit and its card class's offline limit: booked (the
    fuel was taken), each excess flagged for an operator."""
    doc["wallets"] = [litres_wallet(1, products=["diesel"])]
    doc["limits"] = [limit("account", "day", "volume", 1000)]
    doc["offline_limits"] = [{"name": "fleet", "amount_cents": 2000, "volume_cl": 1500}]
    fleet = make(doc)
    sale = fleet.offline_doc(CARD, 2000, nozzle=2)                        # petrol95
    assert fleet.record(sale)["reason"] == ""
    flags = set(tx(fleet, sale).flags.split(","))
    assert {"offline", "product_not_allowed", "over_limit", "over_offline_limit"} <= flags
    assert fleet.balance(1) == 98_000


def test_an_offline_sale_within_everything_has_no_flag_but_offline(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, products=["diesel"])]
    doc["offline_limits"] = [{"name": "fleet", "amount_cents": 5000, "volume_cl": 3000}]
    fleet = make(doc)
    sale = fleet.offline_doc(CARD, 2000)
    assert fleet.record(sale)["reason"] == ""
    assert tx(fleet, sale).flags == "offline"


def test_an_offline_sale_takes_a_wallet_that_has_enough(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, topup=500), litres_wallet(2, priority=1)]
    fleet = make(doc)
    sale = fleet.offline_doc(CARD, 2000)
    assert fleet.record(sale)["reason"] == ""
    assert (fleet.balance(1), fleet.balance(2)) == (500, 98_000)
    assert "overdrawn" not in tx(fleet, sale).flags.split(",")


def test_an_offline_sale_that_overdraws_is_booked_flagged_and_alarmed(
        make: Any, doc: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    doc["wallets"] = [litres_wallet(topup=1000)]
    fleet = make(doc)
    caplog.set_level(logging.WARNING)
    sale = fleet.offline_doc(CARD, 2000)
    assert fleet.record(sale) == {"sale_id": sale["sale_id"], "status": "stored", "reason": ""}
    stored = tx(fleet, sale)
    assert not stored.held and "overdrawn" in stored.flags.split(",")
    assert fleet.balance(1) == -1000                       # the fuel was taken: booked, never lost
    alarms = [r for r in caplog.records if getattr(r, "alarm", None) == "fleet_overdraw"]
    assert len(alarms) == 1 and CARD not in caplog.text
    sound(fleet)


def test_an_offline_sale_of_an_unknown_card_is_held(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    sale = fleet.offline_doc("7077001000000068", 2000)
    assert fleet.record(sale)["reason"] == "held"
    assert "unknown_card" in tx(fleet, sale).flags.split(",")
    assert sale_movements(fleet) == [] and fleet.balance(1) == 100_000


def test_an_offline_sale_sealed_to_another_sale_is_held(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    fleet = make(doc)
    other = fleet.offline_doc(CARD, 2000)
    sale = fleet.offline_doc(CARD, 2000)
    sale["card_sealed"] = other["card_sealed"]              # a sealed number copied onto another sale
    assert fleet.record(sale)["reason"] == "held"
    assert "unknown_card" in tx(fleet, sale).flags.split(",")
    assert sale_movements(fleet) == []


@pytest.mark.parametrize("status", ["lost", "stolen", "blocked"])
def test_an_offline_sale_of_a_stopped_card_is_debited_and_flagged(make: Any, doc: dict[str, Any],
                                                                  status: str) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"][0]["status"] = status
    fleet = make(doc)
    assert fleet.auth().reason == R.CARD_BLOCKED
    sale = fleet.offline_doc(CARD, 2000)
    assert fleet.record(sale)["reason"] == ""
    assert f"card_{status}" in tx(fleet, sale).flags.split(",")
    assert fleet.balance(1) == 98_000


def test_an_offline_tag_sale(make: Any, doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet()]
    doc["cards"] = [{"number": TAG, "account": 1, "medium": "tag", "expiry": "2912"}]
    fleet = make(doc)
    sale = fleet.offline_doc(TAG, 1500, medium="tag")
    assert fleet.record(sale)["reason"] == ""
    assert tx(fleet, sale).card_id == fleet.card(TAG).id and fleet.balance(1) == 98_500


# -- batches -------------------------------------------------------------------------------------------------
def test_a_batch_settles_online_and_offline_sales_of_one_account(make: Any, doc: dict[str, Any]) -> None:
    fleet = two_wallets(make, doc)
    first, second = fleet.approved(), fleet.approved(CARD2)
    sales = [fleet.sale_doc(first.auth_id, 2000), fleet.offline_doc(CARD, 1000),
             fleet.sale_doc(second.auth_id, 1000, nozzle=2)]
    acks = fleet.record_batch(sales)
    assert [a and (a["status"], a["reason"]) for a in acks] == [("stored", "")] * 3
    assert fleet.balance(1) == 100_000 - 3000
    assert fleet.balance(2) == 50_000 - rules.amount_of(1000, PRICES["petrol95"])
    assert len(sale_movements(fleet)) == 3
    assert usage_rows(fleet, "account", 1)["L"][1:] == (4000, 3)
    assert fleet.count(Hold, Hold.released.is_(False)) == 0
    with fleet.sessions() as s:
        assert {c.id for c in s.scalars(select(Card))} == {tx(fleet, x).card_id for x in sales}
    sound(fleet)


# -- what the authorization allowed per product --------------------------------------------------------------
def test_a_sale_beyond_its_products_allowance_is_held(make: Any, doc: dict[str, Any]) -> None:
    """Diesel may take 10 L (its wallet's balance), petrol 150 L: the authorization's allowed_cl is 150 L,
    but a diesel sale of 25 L is far over what was allowed for diesel (and would overdraw its wallet)."""
    doc["wallets"] = [litres_wallet(1, products=["diesel"], topup=1000), litres_wallet(2, priority=1)]
    fleet = make(doc)
    answer = fleet.approved()
    assert offered(answer)["diesel"] == 1000 and answer.allowed_cl == 15_000
    sale = fleet.sale_doc(answer.auth_id, 2500)
    assert fleet.record(sale)["reason"] == "held"
    assert "over_authorized" in tx(fleet, sale).flags.split(",")
    assert (fleet.balance(1), fleet.balance(2)) == (1000, 100_000)
    assert open_holds(fleet, answer) == []


def test_a_pump_a_little_past_its_products_allowance_is_booked_and_flagged(make: Any,
                                                                          doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(1, products=["diesel"], topup=1000), litres_wallet(2, priority=1)]
    fleet = make(doc)
    answer = fleet.approved()
    sale = fleet.sale_doc(answer.auth_id, 1040)                   # 40 cl past a 10 L preset
    assert fleet.record(sale)["reason"] == ""
    assert {"preset_overrun", "overdrawn"} <= set(tx(fleet, sale).flags.split(","))
    assert (fleet.balance(1), fleet.balance(2)) == (-40, 100_000)


def test_a_fleet_authorization_settled_under_another_program_ends_its_holds(make: Any,
                                                                            doc: dict[str, Any]) -> None:
    doc["wallets"] = [litres_wallet(topup=3000)]
    fleet = make(doc)
    answer = fleet.approved()
    sale = fleet.sale_doc(answer.auth_id, 2000, kind="bank")
    assert fleet.record(sale)["reason"] == "held"
    assert "unexpected_authorization" in tx(fleet, sale).flags.split(",")
    assert fleet.balance(1) == 3000 and sale_movements(fleet) == []
    # the authorization is completed (it no longer counts in usage): nor may it hold the wallet
    assert fleet.one(Authorization, Authorization.id == answer.auth_id).status == "completed"
    assert open_holds(fleet, answer) == [] and fleet.available(1, LATER) == 3000


# -- offline sales carried in by USB (registry.usbimport) ---------------------------------------------------
def test_an_offline_fleet_sale_carried_in_by_usb_debits_the_cards_account(tmp_path: Path) -> None:
    from contracts.panseal import derive_pan_key, seal_pan
    from firmware.sale.journal import Journal
    from firmware.sale.machine import SaleState
    from firmware.sale.record import Preset
    from registry.db import open_database
    from registry.keys import load_or_create_keys
    from registry.models import Device
    from registry.pki import fingerprint
    from registry.seed import apply_seed, load_seed
    from registry.usbimport import load_or_create_bundle_key
    from tests.test_usb_exchange import AT, SEED, World
    from tests.test_usbbundle import make_kit

    kit = make_kit(tmp_path / "pki")
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "registry" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), AT)              # the simulator's seed: T-0001, card ...0019
        device = s.get(Device, "T-0001")
        assert device is not None
        device.cert_fingerprint = fingerprint(kit.cert_pem)
        pin_key = keys.device_key(device.pin_key_hex)
        s.commit()
    journal = Journal(tmp_path / "terminal" / "journal.db")
    try:
        world = World(kit, sessions, journal, tmp_path, load_or_create_bundle_key(tmp_path / "registry"))
        sale_id, number = str(uuid.uuid4()), "7077001000000019"
        sealed = seal_pan(derive_pan_key(pin_key), number, request_id=sale_id, terminal="T-0001",
                          station="ST-001")
        # as firmware.programs.fleet.offline journals an offline fleet sale
        journal.begin_sale(sale_id, 1, "707700******0019", "c" * 32, program="fleet")
        journal.transition(sale_id, SaleState.AUTHORIZING,
                           data={"offline": True, "card_sealed": sealed, "medium": "chip"})
        journal.transition(sale_id, SaleState.APPROVED, preset=Preset.volume(3000), nozzles=[1],
                           reference="offline")
        journal.transition(sale_id, SaleState.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
        journal.transition(sale_id, SaleState.COMPLETED, nozzle=1, product="diesel", volume_cl=2000,
                           amount_cents=rules.amount_of(2000, 1659), charged_cents=0, price_milli=1659,
                           finished_at=(AT - dt.timedelta(hours=1)).replace(tzinfo=dt.UTC).timestamp(),
                           flags=["offline"], recovered=False)
        assert "held 0" in world.import_(world.export(), keys=keys)
        with sessions() as s:
            stored = s.scalars(select(Transaction).where(Transaction.sale_id == sale_id)).one()
            assert (stored.held, stored.card_id is not None) == (False, True)
            assert s.scalars(select(Movement).where(Movement.key == f"sale:{sale_id}")).one().amount == -2000
    finally:
        journal.close()
        engine.dispose()
