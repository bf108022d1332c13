"""Points on settled sales (registry.loyalty.earnsale through registry.service.record_sale and record_sales)
and tier reviews (registry.loyalty.tiers) on a real SQLite registry. The Fleet environment (a seeded
registry, a terminal's sealed requests and sales) is tests/test_fleet_authorize.py's."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from contracts import loyalty
from contracts import messages as m
from contracts.cards import luhn_ok
from contracts.panseal import derive_pan_key, seal_pan
from contracts.signing import CONFIG_BODY
from registry.fleet import ledger
from registry.loyalty import admin, earnsale, points, tiers
from registry.models import (
    AuditEntry,
    Card,
    LoyaltyFlag,
    LoyaltyMember,
    Movement,
    PointAward,
    Product,
    Transaction,
)
from registry.voids import void_sale
from tests.test_fleet_authorize import CARD, NOW, PIN_KEY, Fleet, base_seed, litres_wallet
from tests.test_fleet_authorize import make as fleet_fixture

make = fleet_fixture


def luhn(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


LOYAL = luhn("707700900000001")          # a loyalty card
LOYAL2 = luhn("707700900000002")
BANK = luhn("476173900101001")            # a bank card paying (never stored: its token only)
OPS = {"actor": "ops", "now": NOW}
ACC = 2                                   # the loyalty account (account 1 is the fleet's)
LATER = NOW + dt.timedelta(hours=1)       # after the sales (made at NOW + 5 minutes)


@pytest.fixture
def fleet(make: Any) -> Fleet:
    """ST-1 sells diesel (fuel) on nozzle 1; one loyalty account (1 point per litre) with card LOYAL."""
    doc = base_seed()
    doc["wallets"] = [litres_wallet()]
    made: Fleet = make(doc)
    with made.sessions() as s:
        account = admin.create_account(s, "Jo", issued_on=NOW.date(), **OPS)
        admin.add_card(s, made.keys, account.id, LOYAL, medium="chip", expiry="2912", **OPS)
        admin.add_rule(s, "*", "volume", 1000, **OPS)
        s.commit()
        made.loyalty = account.id           # type: ignore[attr-defined]
    return made


def with_loyalty(doc: dict[str, Any], number: str = LOYAL) -> dict[str, Any]:
    doc = dict(doc, loyalty_sealed=seal_pan(derive_pan_key(PIN_KEY), number, request_id=doc["sale_id"],
                                            terminal=doc["terminal"], station=doc["station"]),
               loyalty_medium="chip")
    return m.decode(m.encode(doc, m.SALE), m.SALE)


def bank_sale(fleet: Fleet, volume_cl: int, **kw: Any) -> dict[str, Any]:
    doc = fleet.sale_doc(None, volume_cl, kind="bank", card_masked="476173******0010", **kw)
    return with_loyalty(doc)


def balance(fleet: Fleet, account_id: int) -> int:
    with fleet.sessions() as s:
        return points.points_wallet(s, account_id).balance


def sound(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        assert ledger.check(s) == []
        assert points.check(s) == []


def test_loyalty_card_then_bank_card_earns_once_on_the_settled_sale(fleet: Fleet) -> None:
    doc = bank_sale(fleet, 4050)
    assert fleet.record(doc)["status"] == "stored"
    assert balance(fleet, ACC) == 121           # 40.5 L, first use x3, rounded down once: 121.5
    [award] = fleet.all(PointAward)
    [move] = fleet.all(Movement, Movement.kind == "earn")
    assert (move.key, move.sale_id, award.points, award.remaining, award.station_id, award.product_group) == (
        f"earn:{doc['sale_id']}", doc["sale_id"], 121, 121, "ST-1", "fuel")
    assert fleet.record(doc)["status"] == "duplicate"       # received again: booked once
    assert fleet.count(Movement, Movement.kind == "earn") == 1
    assert fleet.one(LoyaltyMember, LoyaltyMember.account_id == ACC).first_used_at is not None
    sound(fleet)


def test_first_use_bonus_only_on_the_first_earning_sale_within_the_days(fleet: Fleet) -> None:
    fleet.record(bank_sale(fleet, 1000))
    fleet.record(bank_sale(fleet, 1000))
    assert [a.points for a in fleet.all(PointAward)] == [30, 10]
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=None,
              issued_on=NOW.date() - dt.timedelta(days=31))
    fleet.record(bank_sale(fleet, 1000))                    # first use again, but 31 days after issue
    assert [a.points for a in fleet.all(PointAward)] == [30, 10, 10]


def test_fleet_card_online_with_the_loyalty_card_and_a_linked_card_alone(fleet: Fleet) -> None:
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW)
    doc = with_loyalty(fleet.sale_doc(fleet.approved().auth_id, 2000))
    assert fleet.record(doc)["reason"] == ""
    assert balance(fleet, ACC) == 20
    assert fleet.balance(1) == 100_000 - 2000               # the fleet wallet paid as ever
    with fleet.sessions() as s:
        other = admin.create_account(s, "Fleet owner", issued_on=NOW.date(), **OPS)
        admin.link_card(s, fleet.keys, other.id, CARD, **OPS)
        s.commit()
        other_id = other.id
    fleet.sell(fleet.approved(), 1500)                        # no loyalty card: the link earns
    assert balance(fleet, other_id) == 45                    # 15 L, first use x3
    offline = fleet.offline_doc(CARD, 1000)                  # offline, found by its sealed number
    assert fleet.record(offline)["reason"] == ""
    assert balance(fleet, other_id) == 55
    sound(fleet)


def test_no_loyalty_no_points_and_held_sales_earn_nothing(fleet: Fleet) -> None:
    fleet.sell(fleet.approved(), 2000)                       # fleet card, not linked, no loyalty card
    held = bank_sale(fleet, 2000, terminal="T-2")             # T-2 is at ST-2, the sale says ST-1: held
    assert fleet.record(held)["reason"] == "held"
    assert fleet.count(Movement, Movement.kind == "earn") == 0
    nothing = bank_sale(fleet, 0)
    assert fleet.record(nothing)["status"] == "stored"
    assert fleet.count(Movement, Movement.kind == "earn") == 0


def test_a_seal_that_does_not_open_stores_the_sale_without_points(fleet: Fleet) -> None:
    doc = bank_sale(fleet, 1000)
    other = fleet.sale_doc(None, 1000, kind="bank")
    doc["loyalty_sealed"] = with_loyalty(other)["loyalty_sealed"]     # bound to another sale
    assert fleet.record(doc)["status"] == "stored"
    assert fleet.count(Movement, Movement.kind == "earn") == 0


def test_daily_cap_per_card_flags_what_is_over(fleet: Fleet) -> None:
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW)
    with fleet.sessions() as s:
        admin.set_setting(s, "daily_cap_points", 50, **OPS)
        s.commit()
    first, second = bank_sale(fleet, 4000), bank_sale(fleet, 3000)
    fleet.record(first)
    fleet.record(second)
    assert [a.points for a in fleet.all(PointAward)] == [40, 10]
    [flag] = fleet.all(LoyaltyFlag)
    assert (flag.kind, flag.sale_id, flag.account_id) == ("daily_cap", second["sale_id"], ACC)
    assert "earned 30, awarded 10" in flag.detail
    full = bank_sale(fleet, 1000)
    fleet.record(full)                                       # nothing left today: flagged, nothing booked
    assert fleet.count(Movement, Movement.kind == "earn") == 2 and fleet.count(LoyaltyFlag) == 2
    with fleet.sessions() as s:                              # booked again: still nothing, one flag
        tx = s.scalars(select(Transaction).where(Transaction.sale_id == full["sale_id"])).one()
        again = earnsale.book_sale(s, tx, loyalty_token=fleet.keys.token(LOYAL), payer_token=None, now=NOW)
        assert again is not None and (again.points, again.earned) == (0, 10)
        s.commit()
    assert fleet.count(LoyaltyFlag) == 2
    tomorrow = NOW + dt.timedelta(days=1)
    fleet.record(bank_sale(fleet, 1000, finished=tomorrow), now=tomorrow)
    assert balance(fleet, ACC) == 60
    sound(fleet)


def test_promotions_tiers_and_groups_in_order(fleet: Fleet) -> None:
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW, tier="gold")
    fleet.set(Product, Product.code == "petrol95", group="premium")
    with fleet.sessions() as s:
        admin.set_tier(s, "base", rank=0, multiplier_pct=100, min_spend_cents=0, **OPS)
        admin.set_tier(s, "gold", rank=2, multiplier_pct=150, min_spend_cents=100_000, **OPS)
        admin.add_promotion(s, "Premium x2", position=1, product="group:premium", starts_on=NOW.date(),
                            ends_on=NOW.date(), multiplier_pct=200, **OPS)
        s.commit()
    fleet.record(bank_sale(fleet, 1000, nozzle=2))            # 10 L premium x2 x1.5
    fleet.record(bank_sale(fleet, 1000, nozzle=1))            # 10 L diesel x1.5
    later = NOW + dt.timedelta(days=1)
    fleet.record(bank_sale(fleet, 1000, nozzle=2, finished=later), now=later)    # promotion over
    assert [a.points for a in fleet.all(PointAward)] == [30, 15, 15]
    assert [a.product_group for a in fleet.all(PointAward)] == ["premium", "fuel", "premium"]


def test_an_ended_promotion_still_counts_for_sales_before_its_end(fleet: Fleet) -> None:
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW)
    with fleet.sessions() as s:
        promo = admin.add_promotion(s, "x2", position=1, starts_on=NOW.date() - dt.timedelta(days=5),
                                    ends_on=NOW.date() + dt.timedelta(days=20), multiplier_pct=200, **OPS)
        admin.end_promotion(s, promo.id, on=NOW.date() - dt.timedelta(days=1), **OPS)
        s.commit()
    yesterday = NOW - dt.timedelta(days=1)
    fleet.record(bank_sale(fleet, 1000, finished=yesterday))  # made while it ran, arriving today
    fleet.record(bank_sale(fleet, 1000))
    assert [a.points for a in fleet.all(PointAward)] == [20, 10]


def test_a_batch_of_sales_earns_as_one_by_one(fleet: Fleet) -> None:
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW)
    docs = [bank_sale(fleet, 1000 * (i + 1)) for i in range(3)]
    acks = fleet.record_batch(docs)
    assert [a["status"] if a else None for a in acks] == ["stored"] * 3
    assert balance(fleet, ACC) == 60
    assert fleet.record_batch(docs) == [{"sale_id": d["sale_id"], "status": "duplicate", "reason": ""}
                                        for d in docs]
    assert balance(fleet, ACC) == 60
    sound(fleet)


def test_a_sale_capped_to_nothing_leaves_the_first_use_bonus(fleet: Fleet) -> None:
    """The card earned its cap today before the account's first use was recorded (points booked by an
    operator under the card): the capped sale is awarded nothing, so the next day's sale is the first."""
    with fleet.sessions() as s:
        admin.set_setting(s, "daily_cap_points", 50, **OPS)
        card = s.scalars(select(Card).where(Card.token == fleet.keys.token(LOYAL))).one()
        points.award(s, points.points_wallet(s, ACC), 50, key="earn:imported", at=NOW, station="ST-1",
                     product_group="fuel", actor="ops", reason=f"card:{card.id}")
        s.commit()
    capped = bank_sale(fleet, 1000)
    assert fleet.record(capped)["status"] == "stored"
    assert fleet.count(Movement, Movement.kind == "earn") == 1
    assert fleet.one(LoyaltyFlag, LoyaltyFlag.kind == "daily_cap").sale_id == capped["sale_id"]
    assert fleet.one(LoyaltyMember, LoyaltyMember.account_id == ACC).first_used_at is None
    tomorrow = NOW + dt.timedelta(days=1)
    fleet.record(bank_sale(fleet, 1000, finished=tomorrow), now=tomorrow)
    assert [a.points for a in fleet.all(PointAward)] == [50, 30]              # 10 L, first use x3
    assert fleet.one(LoyaltyMember, LoyaltyMember.account_id == ACC).first_used_at is not None
    sound(fleet)


def test_a_sale_paid_by_a_voucher_earns_nothing(fleet: Fleet) -> None:
    """The voucher was a gift (or paid for when bought): its fuel earns no points, loyalty card shown."""
    doc = with_loyalty(fleet.sale_doc(None, 2000, kind="voucher", card_masked="*" * 15 + "1234"))
    assert fleet.record(doc)["status"] == "stored"
    assert fleet.count(Movement, Movement.kind == "earn") == 0 and balance(fleet, ACC) == 0
    assert fleet.one(LoyaltyMember, LoyaltyMember.account_id == ACC).first_used_at is None
    with fleet.sessions() as s:
        tx = s.scalars(select(Transaction).where(Transaction.sale_id == doc["sale_id"])).one()
        assert tx.kind == "voucher"
        assert earnsale.book_sale(s, tx, loyalty_token=fleet.keys.token(LOYAL), payer_token=None,
                                  now=NOW) is None
    fleet.record(bank_sale(fleet, 1000))                     # the next sale paid is the first earning one
    assert [a.points for a in fleet.all(PointAward)] == [30]


def test_book_sale_is_idempotent_and_a_blocked_loyalty_card_earns_nothing(fleet: Fleet) -> None:
    doc = bank_sale(fleet, 1000)
    fleet.record(doc)
    token = fleet.keys.token(LOYAL)
    with fleet.sessions() as s:
        tx = s.scalars(select(Transaction)).one()
        again = earnsale.book_sale(s, tx, loyalty_token=token, payer_token=None, now=NOW)
        assert again is not None and again.points == 30
        s.commit()
    assert fleet.count(Movement, Movement.kind == "earn") == 1
    fleet.set(Card, Card.token == token, status="blocked")
    fleet.record(bank_sale(fleet, 1000))
    assert fleet.count(Movement, Movement.kind == "earn") == 1


# -- tiers -------------------------------------------------------------------------------------------------

def test_tier_review_moves_up_and_down_with_the_rolling_spend(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        admin.set_tier(s, "base", rank=0, multiplier_pct=100, min_spend_cents=0, **OPS)
        admin.set_tier(s, "silver", rank=1, multiplier_pct=125, min_spend_cents=30_00, **OPS)
        admin.set_tier(s, "gold", rank=2, multiplier_pct=150, min_spend_cents=60_00, **OPS)
        admin.link_card(s, fleet.keys, ACC, CARD, **OPS)
        s.commit()
    fleet.sell(fleet.approved(), 2000)                        # linked fleet card: 33.18
    fleet.record(bank_sale(fleet, 2000))                     # loyalty card shown, a bank card paid: 33.18
    fleet.record(fleet.sale_doc(None, 5000, kind="bank"))   # someone else's bank sale: not counted
    with fleet.sessions() as s:
        assert tiers.review(s, ACC, now=LATER, window_months=12) == ("base", "gold")
        s.commit()
    entry = fleet.one(AuditEntry, AuditEntry.action == "loyalty.tier")
    assert entry.subject == f"account:{ACC}"
    with fleet.sessions() as s:
        # the linked card's sale leaves the window first (moved back 13 months)
        first = s.scalars(select(Transaction).order_by(Transaction.id)).first()
        assert first is not None
        s.execute(update(Transaction).where(Transaction.id == first.id)
                  .values(finished_at=NOW - dt.timedelta(days=400)))
        assert tiers.review(s, ACC, now=LATER, window_months=12) == ("gold", "silver")
        assert tiers.review(s, ACC, now=LATER + dt.timedelta(days=400), window_months=12) == (
            "silver", "base")
        s.commit()
    assert fleet.one(LoyaltyMember, LoyaltyMember.account_id == ACC).tier == "base"


def test_a_voided_sale_is_no_spend_for_the_tier(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        admin.set_tier(s, "base", rank=0, multiplier_pct=100, min_spend_cents=0, **OPS)
        admin.set_tier(s, "silver", rank=1, multiplier_pct=125, min_spend_cents=30_00, **OPS)
        admin.set_tier(s, "gold", rank=2, multiplier_pct=150, min_spend_cents=60_00, **OPS)
        s.commit()
    fleet.record(bank_sale(fleet, 2000))                     # 33.18 each
    voided = bank_sale(fleet, 2000)
    fleet.record(voided)
    with fleet.sessions() as s:
        assert tiers.spend_cents(s, ACC, NOW - dt.timedelta(days=1), LATER) == 66_36
        void_sale(s, voided["sale_id"], actor="ops", reason="fuel returned", now=LATER)
        assert tiers.spend_cents(s, ACC, NOW - dt.timedelta(days=1), LATER) == 33_18
        assert tiers.review(s, ACC, now=LATER, window_months=12) == ("base", "silver")


# -- one card at several terminals at once ----------------------------------------------------------------

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def any_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    url = pg_env.database_url(request, tmp_path)
    doc = base_seed()
    doc["wallets"] = [litres_wallet()]
    made = Fleet(tmp_path / "fleet", doc, None if url.startswith("sqlite") else url)
    with made.sessions() as s:
        if not url.startswith("sqlite"):        # the seed's explicit ids left the sequences behind
            for table in ("accounts", "wallets"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))"))
        account = admin.create_account(s, "Jo", issued_on=NOW.date(), **OPS)
        admin.add_card(s, made.keys, account.id, LOYAL, medium="chip", expiry="2912", **OPS)
        admin.add_rule(s, "*", "volume", 1000, **OPS)
        admin.set_setting(s, "daily_cap_points", 50, **OPS)
        s.commit()
        assert account.id == ACC
    yield made
    made.engine.dispose()


def test_sales_of_one_card_at_once_never_pass_the_daily_cap(any_fleet: Fleet) -> None:
    fleet = any_fleet
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, first_used_at=NOW)
    docs = [bank_sale(fleet, 2000) for _ in range(6)]          # 6 x 20 points at once; the cap is 50
    errors: list[BaseException] = []

    def send(doc: dict[str, Any]) -> None:
        for _ in range(20):                                     # as a terminal resends an unanswered sale
            try:
                fleet.record(doc)
                return
            except OperationalError:
                time.sleep(0.05)
        errors.append(RuntimeError("never stored"))

    threads = [threading.Thread(target=send, args=(d,)) for d in docs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert fleet.count(Transaction) == 6
    assert balance(fleet, ACC) == 50
    assert sorted(a.points for a in fleet.all(PointAward)) == [10, 20, 20]
    assert fleet.count(LoyaltyFlag, LoyaltyFlag.kind == "daily_cap") == 4
    sound(fleet)


def test_the_configuration_s_programme_gives_the_terminal_the_points_the_registry_books(fleet: Fleet) -> None:
    fleet.set(Product, Product.code == "petrol95", group="premium")
    with fleet.sessions() as s:
        admin.set_tier(s, "base", rank=0, multiplier_pct=100, min_spend_cents=0, **OPS)
        admin.set_tier(s, "gold", rank=1, multiplier_pct=150, min_spend_cents=100_000, **OPS)
        admin.add_rule(s, "group:premium", "volume", 2500, **OPS)
        admin.add_promotion(s, "Premium x2", position=1, product="group:premium", starts_on=NOW.date(),
                            ends_on=NOW.date(), multiplier_pct=200, **OPS)
        admin.add_promotion(s, "North +5", position=2, stations="group:north", starts_on=NOW.date(),
                            ends_on=NOW.date(), bonus_points=5, **OPS)
        admin.add_promotion(s, "Old", position=3, starts_on=NOW.date() - dt.timedelta(days=9),
                            ends_on=NOW.date() - dt.timedelta(days=1), bonus_points=99, **OPS)
        doc = earnsale.config_settings(s, "ST-1", NOW.date())
        assert CONFIG_BODY["programs"]([{"name": "loyalty", "enabled": 1, "settings": doc}])
        assert [k for k in doc if k.startswith("promo_")] == ["promo_0"]      # ST-2's and the ended left out
        s.commit()
    fleet.set(LoyaltyMember, LoyaltyMember.account_id == ACC, tier="gold")
    sale = bank_sale(fleet, 1234, nozzle=2)
    fleet.record(sale)
    offline = loyalty.earn(loyalty.programme_from_doc(doc),
                           loyalty.SaleFacts("petrol95", "premium", "ST-1", 1234, sale["amount_cents"],
                                             NOW.date()), tier="gold", first_use=True)
    assert offline.points == balance(fleet, ACC) == 277       # 12.34 L x 2.5 x 2 x 3 x 1.5 = 277.65
