"""Prepaid, gift and purpose-restricted cards (registry.prepaid, registry.prepaid_bonus) on a real SQLite
registry: issue, top-up with a bonus, refunds that never pay out more than was paid in, the fleet sweep's
expiry, and purpose-restricted credit through registry.fleet.authorize and settle (test_fleet_authorize's
Fleet environment: requests and sales cross the wire as a terminal sends them)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from contracts.errors import ConfigError
from contracts.reasons import DeclineReason as R
from registry import prepaid
from registry.fleet import ledger, rules
from registry.fleet.sweep import sweep
from registry.loyalty import convert, points
from registry.models import (
    Account,
    AuditEntry,
    Card,
    Hold,
    LoyaltyMember,
    Movement,
    Product,
    Transaction,
    Wallet,
)
from registry.prepaid import Credit, PrepaidError
from registry.prepaid_bonus import add_bonus, end_bonus, list_bonuses
from tests.test_fleet_authorize import CARD2, NOW, PRICES, Fleet, base_seed, offered
from tests.test_fleet_authorize import make as fleet_fixture

make = fleet_fixture
OP: dict[str, Any] = {"actor": "cashier-7", "now": NOW}
FUEL, SHOP = Credit("group:fuel", name="fuel"), Credit("group:shop", name="shop")


def luhn(body: str) -> str:
    """body + its check digit (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str(-total % 10)


def number(n: int) -> str:
    return luhn(f"707700300{n:06d}")


@pytest.fixture
def fleet(make: Any) -> Fleet:
    """ST-1 pump 1 sells diesel and petrol95 (group fuel) and adblue (group adblue); coffee is a shop item."""
    made: Fleet = make(base_seed())
    with made.sessions() as s:
        s.execute(update(Product).where(Product.code == "adblue").values(group="adblue"))
        s.add(Product(code="coffee", name="Coffee", code3="400", group="shop"))
        s.commit()
    return made


def issue(fleet: Fleet, *credits: Credit, kind: str = "prepaid", card: str = CARD2,
          **kw: Any) -> prepaid.Issued:
    with fleet.sessions() as s:
        done = prepaid.issue(s, fleet.keys, kind=kind, number=card, expiry="2712", medium="stripe",
                             credits=credits or (Credit(),), **kw, **OP)
        s.commit()
        return done


def topup(fleet: Fleet, cents: int, key: str, **kw: Any) -> prepaid.Topped:
    with fleet.sessions() as s:
        done = prepaid.topup(s, cents, key=key, **{"now": NOW, "actor": "cashier-7", **kw})
        s.commit()
        return done


def balances(fleet: Fleet, account: int) -> dict[int, int]:
    with fleet.sessions() as s:
        assert ledger.check(s) == []
        return {w.id: w.balance for w in s.scalars(select(Wallet).where(Wallet.account_id == account))}


# -- issue ------------------------------------------------------------------------------------------------
def test_issue_makes_an_account_of_its_kind_its_credits_and_an_active_card(fleet: Fleet) -> None:
    done = issue(fleet, FUEL, SHOP, kind="gift")
    with fleet.sessions() as s:
        account = s.get(Account, done.account_id)
        assert account is not None and (account.kind, account.customer_id, account.status) == ("gift", None,
                                                                                              "active")
        wallets = [s.get(Wallet, w) for w in done.wallet_ids]
        assert [(w.unit, w.mode, w.allowed_products, w.balance, w.expires_on) for w in wallets if w] == [
            ("money", "prepaid", "group:fuel", 0, dt.date(2027, 12, 31)),
            ("money", "prepaid", "group:shop", 0, dt.date(2027, 12, 31))]
        card = s.get(Card, done.card.id)
        assert card is not None and (card.account_id, card.status, card.medium) == (done.account_id, "active",
                                                                                    "stripe")
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "gift.issue")).one()
        assert entry.actor == "cashier-7" and CARD2 not in entry.detail and CARD2[6:] not in entry.detail


@pytest.mark.parametrize("over", [{"kind": "loyalty"}, {"credits": (Credit("group:nosuch"),)},
                                  {"credits": (Credit("group:"),)}, {"credits": ()},
                                  {"expires_on": NOW.date() - dt.timedelta(days=1)},
                                  {"customer_id": 99}, {"timezone": "Mars/Olympus"}, {"expiry": "2613"}])
def test_issue_refuses_bad_values_as_config_errors(fleet: Fleet, over: dict[str, Any]) -> None:
    args: dict[str, Any] = {"kind": "prepaid", "number": CARD2, "expiry": "2712", "credits": (Credit(),),
                            **over}
    with fleet.sessions() as s, pytest.raises(ConfigError):
        prepaid.issue(s, fleet.keys, **args, **OP)


def test_a_number_issued_already_is_refused(fleet: Fleet) -> None:
    issue(fleet)
    with pytest.raises(ConfigError, match="issued already"):
        issue(fleet)


# -- top-up and its bonus -----------------------------------------------------------------------------------
def test_pay_100_get_110_booked_apart_and_once(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        add_bonus(s, "prepaid", min_cents=50_00, bonus_pct=10, **OP)
        add_bonus(s, "gift", min_cents=0, bonus_pct=50, **OP)              # another kind's: not this card's
        s.commit()
    done = issue(fleet)
    first = topup(fleet, 100_00, "PAY-1", card_id=done.card.id)
    assert (first.paid.kind, first.paid.amount, first.paid.key, first.again) == (
        "topup", 100_00, "topup:PAY-1", False)
    assert first.bonus is not None and (first.bonus.kind, first.bonus.amount, first.bonus.key) == (
        "bonus", 10_00, "bonus:PAY-1")
    again = topup(fleet, 100_00, "PAY-1", account_id=done.account_id)
    assert again.again and again.paid.id == first.paid.id and again.bonus is not None
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 110_00}
    with pytest.raises(ledger.LedgerError):
        topup(fleet, 90_00, "PAY-1", card_id=done.card.id)
    small = topup(fleet, 40_00, "PAY-2", card_id=done.card.id)           # under the offer's least top-up
    assert small.bonus is None
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 150_00}


def test_the_best_offer_in_force_that_day_wins_and_an_ended_one_gives_nothing(fleet: Fleet) -> None:
    today = NOW.date()
    with fleet.sessions() as s:
        ten = add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        add_bonus(s, "prepaid", min_cents=0, bonus_cents=15_00, starts_on=today, ends_on=today, **OP)
        add_bonus(s, "prepaid", min_cents=0, bonus_pct=90, starts_on=today + dt.timedelta(days=1), **OP)
        s.commit()
        assert len(list_bonuses(s, day=today)) == 2 and len(list_bonuses(s)) == 3
    done = issue(fleet)
    got = topup(fleet, 100_00, "A", card_id=done.card.id)
    assert got.bonus is not None and got.bonus.amount == 15_00
    later = NOW + dt.timedelta(days=1)
    with fleet.sessions() as s:
        end_bonus(s, ten.id, actor="boss", now=later)                   # its last day: yesterday (today)
        s.commit()
    assert topup(fleet, 100_00, "B", card_id=done.card.id, now=later).bonus.amount == 90_00  # type: ignore[union-attr]
    with fleet.sessions() as s:
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "topup_bonus.end")) is not None


def test_paid_and_bonus_are_both_booked_or_neither(fleet: Fleet) -> None:
    """The bonus's key is taken (here by hand on another card): the top-up fails whole, nothing is paid."""
    with fleet.sessions() as s:
        add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    other = issue(fleet, card=number(1))
    done = issue(fleet)
    with fleet.sessions() as s:
        wallet = s.get(Wallet, other.wallet_ids[0])
        assert wallet is not None
        ledger.post(s, wallet, "correction", 1, key="bonus:PAY-9", at=NOW)
        s.commit()
    with pytest.raises(ledger.LedgerError):
        topup(fleet, 100_00, "PAY-9", card_id=done.card.id)
    with fleet.sessions() as s:
        assert s.scalar(select(Movement.id).where(Movement.key == "topup:PAY-9")) is None
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 0}


def test_several_credits_need_the_one_named_and_an_expired_one_takes_nothing(fleet: Fleet) -> None:
    done = issue(fleet, FUEL, SHOP, expires_on=NOW.date())
    with pytest.raises(ConfigError, match="several credits"):
        topup(fleet, 10_00, "K1", card_id=done.card.id)
    topup(fleet, 10_00, "K1", card_id=done.card.id, wallet_id=done.wallet_ids[1])
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 0, done.wallet_ids[1]: 10_00}
    with pytest.raises(PrepaidError, match="expired"):
        topup(fleet, 10_00, "K2", card_id=done.card.id, wallet_id=done.wallet_ids[0],
              now=NOW + dt.timedelta(days=1))
    with pytest.raises(PrepaidError):                                    # a fleet card is not topped up here
        topup(fleet, 10_00, "K3", account_id=1)


# -- refunds ------------------------------------------------------------------------------------------------
def spend(fleet: Fleet, wallet_id: int, cents: int, key: str) -> None:
    with fleet.sessions() as s:
        wallet = s.get(Wallet, wallet_id)
        assert wallet is not None
        ledger.post(s, wallet, "sale", -cents, key=f"sale:{key}", at=NOW, sale_id=key)
        s.commit()


def refund(fleet: Fleet, key: str, **kw: Any) -> prepaid.Refunded:
    with fleet.sessions() as s:
        done = prepaid.refund(s, key=key, reason="card returned", **{**OP, **kw})
        s.commit()
        return done


def test_a_refund_pays_back_the_paid_money_left_never_the_bonus(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    done = issue(fleet)
    wallet = done.wallet_ids[0]
    topup(fleet, 100_00, "P1", card_id=done.card.id)                       # 100 + 10
    spend(fleet, wallet, 30_00, "s1")                                        # the paid money goes first
    paid = refund(fleet, "R1", card_id=done.card.id)
    assert (paid.cents, paid.again, [m.kind for m in paid.movements]) == (70_00, False, ["refund"])
    assert balances(fleet, done.account_id) == {wallet: 10_00}               # the bonus stays, to spend
    assert refund(fleet, "R1", card_id=done.card.id).again
    assert refund(fleet, "R2", card_id=done.card.id).cents == 0
    spend(fleet, wallet, 10_00, "s2")
    assert balances(fleet, done.account_id) == {wallet: 0}


def test_gift_cards_are_not_refundable(fleet: Fleet) -> None:
    done = issue(fleet, kind="gift")
    topup(fleet, 50_00, "G1", card_id=done.card.id)
    with pytest.raises(PrepaidError, match="not refundable"):
        refund(fleet, "R1", card_id=done.card.id)
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 50_00}


def test_a_refund_leaves_what_an_open_authorization_holds_and_an_expired_credit_pays_nothing(
        fleet: Fleet) -> None:
    done = issue(fleet, FUEL, expires_on=NOW.date())
    topup(fleet, 50_00, "P1", card_id=done.card.id)
    answer = fleet.approved(CARD2, None)
    with fleet.sessions() as s:
        held = s.scalar(select(Hold.amount).where(Hold.auth_id == answer.auth_id))
    assert held == 50_00
    assert refund(fleet, "R1", card_id=done.card.id).cents == 0
    assert refund(fleet, "R2", card_id=done.card.id, now=NOW + dt.timedelta(days=2)).cents == 0


def reverse(fleet: Fleet, key: str) -> tuple[Movement, ...]:
    with fleet.sessions() as s:
        done = prepaid.reverse_topup(s, key, actor="back-office", reason="charged back", now=NOW)
        s.commit()
        return done


def test_a_topup_reversal_takes_back_paid_and_bonus_once_and_never_what_was_spent(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    done = issue(fleet)
    wallet = done.wallet_ids[0]
    topup(fleet, 50_00, "P1", card_id=done.card.id)
    topup(fleet, 20_00, "P2", card_id=done.card.id)
    moves = reverse(fleet, "P2")
    assert [(m.kind, m.amount, m.key) for m in moves] == [("reversal", -20_00, "reversal:topup:P2"),
                                                          ("reversal", -2_00, "reversal:bonus:P2")]
    assert [m.id for m in reverse(fleet, "P2")] == [m.id for m in moves]         # once
    spend(fleet, wallet, 10_00, "s1")
    with pytest.raises(PrepaidError, match="spent or paid out"):
        reverse(fleet, "P1")
    assert refund(fleet, "R", card_id=done.card.id).cents == 40_00
    assert balances(fleet, done.account_id) == {wallet: 5_00}


def loyalty_points(fleet: Fleet, amount: int, key: str) -> int:
    """A loyalty account holding `amount` points (one converts to one cent); its id."""
    with fleet.sessions() as s:
        account = Account(name="Points", kind="loyalty", status="active", auth_seq=0)
        s.add(account)
        s.flush()
        s.add(LoyaltyMember(account_id=account.id, issued_on=NOW.date()))
        wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
        s.add(wallet)
        s.flush()
        points.award(s, wallet, amount, key=points.earn_key(key), at=NOW, station="ST-1",
                     product_group="fuel")
        s.commit()
        return account.id


def convert_points(fleet: Fleet, wallet: int, cents: int, key: str) -> int:
    """Points converted to `cents` of credit on the wallet (registry.loyalty.convert): what it credited."""
    account = loyalty_points(fleet, cents, key)
    with fleet.sessions() as s:
        if not convert.table(s):
            convert.set_table(s, [(1, 1000)], actor="ops", now=NOW)
        done = convert.convert(s, account=account, points=cents, wallet=wallet, key=key, now=NOW,
                               attendant="")
        s.commit()
        return done.cents


def test_converted_points_and_an_opening_balance_are_spent_never_refunded(fleet: Fleet) -> None:
    done = issue(fleet)
    wallet = done.wallet_ids[0]
    assert convert_points(fleet, wallet, 40_00, "cv1") == 40_00
    with fleet.sessions() as s:
        w = s.get(Wallet, wallet)
        assert w is not None
        ledger.topup(s, w, 5_00, key=f"seed-topup:{wallet}", at=NOW, actor="seed", reason="opening balance")
        s.commit()
    assert refund(fleet, "R1", card_id=done.card.id).cents == 0
    topup(fleet, 10_00, "P1", card_id=done.card.id)
    assert refund(fleet, "R2", card_id=done.card.id).cents == 10_00         # the paid money only
    assert balances(fleet, done.account_id) == {wallet: 45_00}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["topup", "spend", "refund", "correct", "reverse", "convert"]),
                          st.integers(1, 200_00)), max_size=10))
@example([("convert", 50_00), ("refund", 1)])
@example([("topup", 10_00), ("convert", 20_00), ("spend", 5_00), ("refund", 1)])
def test_no_sequence_pays_out_more_than_was_paid_in(fleet: Fleet, steps: list[tuple[str, int]]) -> None:
    """Any sequence of top-ups (with a 10 % bonus), sales, refunds, corrections, top-up reversals and
    points converted to credit: the refunds never exceed what was paid in (net of reversals; converted
    points are no money paid), never take more than the balance, and every balance is the sum of its
    movements. One database for every example, a new card for each."""
    with fleet.sessions() as s:
        count = s.scalar(select(Account.id).order_by(Account.id.desc()).limit(1)) or 0
        if not list_bonuses(s):
            add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    done = issue(fleet, card=number(100 + count))
    wallet = done.wallet_ids[0]
    paid = refunded = 0
    topups: list[tuple[str, int]] = []
    for i, (step, cents) in enumerate(steps):
        key = f"{done.account_id}-{i}"
        balance = balances(fleet, done.account_id)[wallet]
        if step == "topup":
            paid += topup(fleet, cents, key, card_id=done.card.id).paid.amount
            topups.append((key, cents))
        elif step == "spend" and cents <= balance:
            spend(fleet, wallet, cents, key)
        elif step == "refund":
            out = refund(fleet, key, account_id=done.account_id).cents
            assert 0 <= out <= balance
            refunded += out
        elif step == "correct":
            with fleet.sessions() as s:
                w = s.get(Wallet, wallet)
                assert w is not None
                ledger.post(s, w, "correction", cents, key=f"c:{key}", at=NOW)
                s.commit()
        elif step == "convert":
            assert convert_points(fleet, wallet, cents, key) == cents
        elif step == "reverse" and topups:
            last, amount = topups.pop()
            try:
                reverse(fleet, last)
                paid -= amount
            except PrepaidError:
                pass
        assert refunded <= paid
    assert balances(fleet, done.account_id)[wallet] >= 0


# -- expiry -------------------------------------------------------------------------------------------------
def test_the_hourly_sweep_empties_a_credit_past_its_last_day_bonus_included(fleet: Fleet) -> None:
    with fleet.sessions() as s:
        add_bonus(s, "gift", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    done = issue(fleet, kind="gift", expires_on=NOW.date())
    topup(fleet, 20_00, "G1", card_id=done.card.id)
    with fleet.sessions() as s:
        assert sweep(s, NOW) == (0, 0)
        assert sweep(s, NOW + dt.timedelta(days=1)) == (0, 1)
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 0}


# -- product groups in a wallet's products (registry.fleet.rules) ------------------------------------------
@pytest.mark.parametrize(("spec", "group", "allowed"), [
    ("group:fuel", "fuel", True), ("group:fuel", "shop", False), ("group:fuel", None, False),
    ("group:shop,019", "fuel", True),           # diesel's code listed besides a shop group
    ("group:shop, group:fuel", "fuel", True), ("", "shop", True)])
def test_a_wallets_products_may_name_a_product_group(spec: str, group: str | None, allowed: bool) -> None:
    assert rules.product_allowed(spec, "diesel", "019", group) is allowed


@pytest.mark.parametrize("spec", ["group:", "group:has space", "group:" + "x" * 17, "group:a,,"])
def test_a_bad_product_group_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        rules.check_products(spec)


# -- purpose-restricted credit at the pump ------------------------------------------------------------------
def wallet_of(fleet: Fleet, auth_id: str | None) -> set[int]:
    with fleet.sessions() as s:
        return set(s.scalars(select(Hold.wallet_id).where(Hold.auth_id == auth_id)))


def test_a_shop_only_credit_is_refused_for_fuel(fleet: Fleet) -> None:
    done = issue(fleet, SHOP)
    topup(fleet, 50_00, "P1", card_id=done.card.id)
    answer = fleet.auth(CARD2, None)
    assert (answer.approved, answer.reason) == (False, R.PRODUCT_NOT_ALLOWED)
    assert balances(fleet, done.account_id) == {done.wallet_ids[0]: 50_00}


def test_fuel_comes_from_the_fuel_credit_only(fleet: Fleet) -> None:
    done = issue(fleet, SHOP, FUEL)               # the shop credit is first by priority: never for fuel
    shop, fuel = done.wallet_ids
    topup(fleet, 80_00, "S", card_id=done.card.id, wallet_id=shop)
    topup(fleet, 20_00, "F", card_id=done.card.id, wallet_id=fuel)
    answer = fleet.approved(CARD2, None)
    allowed = offered(answer)
    assert set(allowed) == {"diesel", "petrol95"}                 # adblue is in no credit's group
    assert allowed["diesel"] == 20_00 * 1000 // PRICES["diesel"]  # what the fuel credit's 20.00 buys
    assert wallet_of(fleet, answer.auth_id) == {fuel}
    sale = fleet.sale_doc(answer.auth_id, 1000)
    assert fleet.record(sale)["status"] == "stored"
    cost = sale["amount_cents"]
    assert balances(fleet, done.account_id) == {shop: 80_00, fuel: 20_00 - cost}


def test_an_empty_fuel_credit_is_insufficient_funds_not_paid_by_the_shop_credit(fleet: Fleet) -> None:
    done = issue(fleet, FUEL, SHOP)
    topup(fleet, 80_00, "S", card_id=done.card.id, wallet_id=done.wallet_ids[1])
    answer = fleet.auth(CARD2, None)
    assert (answer.approved, answer.reason) == (False, R.INSUFFICIENT_FUNDS)


def test_a_credit_for_other_stations_is_refused_here(fleet: Fleet) -> None:
    done = issue(fleet, Credit("group:fuel", "group:north"))
    topup(fleet, 50_00, "P", card_id=done.card.id)
    assert fleet.auth(CARD2, None).reason == R.STATION_NOT_ALLOWED
    assert fleet.approved(CARD2, None, terminal="T-2", station="ST-2").approved


def test_an_offline_fuel_sale_is_booked_on_the_fuel_credit(fleet: Fleet) -> None:
    done = issue(fleet, SHOP, FUEL)
    shop, fuel = done.wallet_ids
    topup(fleet, 80_00, "S", card_id=done.card.id, wallet_id=shop)
    topup(fleet, 50_00, "F", card_id=done.card.id, wallet_id=fuel)
    sale = fleet.offline_doc(CARD2, 1000)
    assert fleet.record(sale)["status"] == "stored"
    with fleet.sessions() as s:
        stored = s.scalars(select(Transaction).where(Transaction.sale_id == sale["sale_id"])).one()
        assert stored.wallet_id == fuel
    assert balances(fleet, done.account_id) == {shop: 80_00, fuel: 50_00 - sale["amount_cents"]}


# -- two tills at once, SQLite and PostgreSQL ---------------------------------------------------------------
pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def tills(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    url = pg_env.database_url(request, tmp_path / "db")
    seed = {**base_seed(), "customers": [], "accounts": [], "cards": []}   # ids from PostgreSQL's sequences
    made = Fleet(tmp_path / "fleet", seed, None if url.startswith("sqlite") else url)
    with made.sessions() as s:
        s.execute(update(Product).where(Product.code == "adblue").values(group="adblue"))
        s.commit()
    yield made
    made.engine.dispose()


def at_once(*jobs: Callable[[], object]) -> list[object]:
    """Run the jobs in threads started together; their results (an exception is a result)."""
    results: list[object] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # noqa: BLE001 -- compared by the test
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_payment_given_at_two_tills_at_once_is_booked_once(tills: Fleet) -> None:
    with tills.sessions() as s:
        add_bonus(s, "prepaid", min_cents=0, bonus_pct=10, **OP)
        s.commit()
    done = issue(tills)
    got = at_once(*[lambda: topup(tills, 30_00, "PAY-X", card_id=done.card.id)] * 2)
    assert all(isinstance(g, prepaid.Topped) for g in got), got
    assert sorted(g.again for g in got if isinstance(g, prepaid.Topped)) == [False, True]
    assert balances(tills, done.account_id) == {done.wallet_ids[0]: 33_00}


def test_two_refunds_at_once_pay_out_once(tills: Fleet) -> None:
    done = issue(tills)
    topup(tills, 40_00, "PAY-1", card_id=done.card.id)
    got = at_once(lambda: refund(tills, "R-1", card_id=done.card.id),
                  lambda: refund(tills, "R-2", account_id=done.account_id))
    assert sorted(g.cents for g in got if isinstance(g, prepaid.Refunded)) == [0, 40_00], got
    assert balances(tills, done.account_id) == {done.wallet_ids[0]: 0}
