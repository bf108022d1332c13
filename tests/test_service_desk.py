"""The registry's answers to service requests (registry.service_desk) on a seeded SQLite registry: requests
built and read back exactly as the wire carries them, card numbers sealed under the device's PIN key."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select
from test_registry_service import NOW, PIN_KEY, Env, sqlite_env

from contracts import service_messages as sv
from contracts.panseal import derive_pan_key, seal_pan
from registry import attendants, prepaid, vouchers
from registry.loyalty import admin, points, rewards
from registry.models import AuditEntry, Movement, RewardStock, Voucher, Wallet
from registry.service_desk import answer

LOYAL = "7077009000000012"
STRANGER = "7077009000000095"
GIFT = "7077008000000014"
CLERK = "7077007000000016"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def ask(env: Env, op: str, *, card: str | None = None, code: str | None = None,
        now: dt.datetime = NOW, **fields: Any) -> dict[str, Any]:
    """A request as T-0001 sends it, answered, the answer checked against the wire schema."""
    rid = str(uuid.uuid4())
    req: dict[str, Any] = {"request_id": rid, "terminal": "T-0001", "station": "ST-001", "op": op, **fields}
    key = derive_pan_key(PIN_KEY)
    for field, number in (("card_sealed", card), ("code_sealed", code)):
        if number is not None:
            req[field] = seal_pan(key, number, request_id=rid, terminal="T-0001", station="ST-001")
    req = sv.decode_request(sv.encode_request(req))
    with env.sessions() as s:
        doc = answer(s, env.keys, req, now)
    return sv.decode_response(sv.encode_response(doc))


@pytest.fixture
def member(env: Env) -> int:
    """A loyalty account with a card, 500 points and a coffee (100 points) in stock twice at ST-001."""
    with env.sessions() as s:
        account = admin.create_account(s, "Dana", issued_on=NOW.date(), actor="op", now=NOW)
        admin.add_card(s, env.keys, account.id, LOYAL, medium="chip", expiry="2912", actor="op", now=NOW)
        wallet = points.points_wallet(s, account.id)
        points.award(s, wallet, 500, key="seed:1", at=NOW, station="ST-001", product_group="fuel")
        coffee = rewards.add_reward(s, "Coffee", 100, actor="op", now=NOW)
        rewards.set_stock(s, coffee.id, "ST-001", 2, actor="op", now=NOW)
        attendants.add(s, "A-1", "Ann", actor="op", now=NOW)
        attendants.set_card(s, env.keys, "A-1", CLERK, actor="op", now=NOW)
        attendants.set_pin(s, "A-1", "2580", actor="op", now=NOW)
        s.commit()
        return account.id


def test_a_lookup_shows_the_balance_history_and_this_stations_rewards(env: Env, member: int) -> None:
    got = ask(env, "loyalty_lookup", card=LOYAL)
    assert got["ok"] and got["result"]["balance"] == 500 and got["result"]["pooled"] is False
    assert got["result"]["masked"].endswith("0012") and LOYAL not in str(got)
    assert [(h["points"], h["kind"]) for h in got["result"]["history"]] == [(500, "earn")]
    assert [(r["name"], r["points"], r["stock"]) for r in got["result"]["rewards"]] == [("Coffee", 100, 2)]


def test_an_unknown_card_and_a_card_sealed_for_another_request_are_refused(env: Env, member: int) -> None:
    assert ask(env, "loyalty_lookup", card=STRANGER)["reason"] == sv.ServiceReason.UNKNOWN_CARD
    rid = str(uuid.uuid4())
    other = seal_pan(derive_pan_key(PIN_KEY), LOYAL, request_id=str(uuid.uuid4()), terminal="T-0001",
                     station="ST-001")
    req = sv.decode_request(sv.encode_request({"request_id": rid, "terminal": "T-0001", "station": "ST-001",
                                               "op": "loyalty_lookup", "card_sealed": other}))
    with env.sessions() as s:
        assert answer(s, env.keys, req, NOW)["reason"] == sv.ServiceReason.UNKNOWN_CARD


def test_a_terminal_asking_for_another_station_is_refused(env: Env, member: int) -> None:
    rid = str(uuid.uuid4())
    req = {"request_id": rid, "terminal": "T-0001", "station": "ST-999", "op": "loyalty_lookup",
           "card_sealed": seal_pan(derive_pan_key(PIN_KEY), LOYAL, request_id=rid, terminal="T-0001",
                                   station="ST-999")}
    with env.sessions() as s:
        assert answer(s, env.keys, req, NOW)["reason"] == sv.ServiceReason.NOT_ALLOWED


def test_redeeming_takes_the_points_and_the_stock_once_per_request(env: Env, member: int) -> None:
    got = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=1, handed_over=True)
    assert got["ok"] and got["result"]["balance"] == 400 and got["result"]["status"] == "handed_over"
    with env.sessions() as s:
        assert s.scalar(select(RewardStock.quantity)) == 1
    ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=1, handed_over=True)
    third = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=1, handed_over=True)
    assert third["reason"] == sv.ServiceReason.OUT_OF_STOCK
    ordered = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=1, handed_over=False)
    assert ordered["result"]["status"] == "pending" and ordered["result"]["balance"] == 200


def test_redeeming_needs_the_points_and_a_known_attendant(env: Env, member: int) -> None:
    with env.sessions() as s:
        dear = rewards.add_reward(s, "Jacket", 900, actor="op", now=NOW)
        s.commit()
        dear_id = dear.id
    short = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=dear_id, handed_over=False)
    assert short["reason"] == sv.ServiceReason.INSUFFICIENT_POINTS
    nobody = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-9", reward=1, handed_over=False)
    assert nobody["reason"] == sv.ServiceReason.NOT_ALLOWED
    no_such = ask(env, "loyalty_redeem", card=LOYAL, attendant="A-1", reward=999, handed_over=False)
    assert no_such["reason"] == sv.ServiceReason.NOT_ALLOWED        # answered, not dropped
    with env.sessions() as s:
        assert points.points_wallet(s, member).balance == 500


def _pin(pin: str, number: str = CLERK) -> str:
    return encipher_pinblock_iso_4(PIN_KEY, pin, number).hex().upper()


def test_an_attendant_signs_in_and_wrong_pins_lock_them_out(env: Env, member: int) -> None:
    ok = ask(env, "attendant_signin", card=CLERK, pin_block=_pin("2580"))
    assert ok["ok"] and ok["result"] == {"attendant": "A-1", "name": "Ann", "role": "attendant"}
    tries = [ask(env, "attendant_signin", card=CLERK, pin_block=_pin("1397")) for _ in range(5)]
    assert [t["reason"] for t in tries] == ["wrong_pin"] * 4 + ["locked"]
    assert [t.get("tries_left") for t in tries] == [4, 3, 2, 1, 0]
    assert ask(env, "attendant_signin", card=CLERK, pin_block=_pin("2580"))["reason"] == "locked"
    with env.sessions() as s:
        kinds = s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "attendant:A-1")).all()
        assert "attendant.lockout" in kinds and all("2580" not in a.detail for a in s.scalars(
            select(AuditEntry)))


def test_a_cash_topup_books_the_paid_amount_and_the_bonus(env: Env, member: int) -> None:
    with env.sessions() as s:
        prepaid.issue(s, env.keys, kind="gift", number=GIFT, expiry="2912", actor="op", now=NOW)
        from registry.models import TopupBonus
        s.add(TopupBonus(account_kind="gift", min_cents=10000, bonus_pct=10, bonus_cents=0))
        s.commit()
    got = ask(env, "topup", card=GIFT, attendant="A-1", amount_cents=10000)
    assert got["ok"] and (got["result"]["paid_cents"], got["result"]["bonus_cents"],
                          got["result"]["balance_cents"]) == (10000, 1000, 11000)
    with env.sessions() as s:
        wallet = s.scalars(select(Wallet).join(Movement, Movement.wallet_id == Wallet.id)
                           .where(Movement.kind == "bonus")).one()
        assert wallet.balance == s.scalar(select(func.sum(Movement.amount)).where(
            Movement.wallet_id == wallet.id)) == 11000
    assert ask(env, "topup", card=LOYAL, attendant="A-1", amount_cents=500)["reason"] == "not_allowed"


def test_a_voucher_is_redeemed_once_and_released_when_nothing_was_dispensed(env: Env, member: int) -> None:
    with env.sessions() as s:
        [voucher] = vouchers.issue(s, env.keys, product="diesel", volume_cl=2000, count=1, expires_on=None,
                                   now=NOW, actor="op")
        s.commit()
    first = ask(env, "voucher_redeem", code=voucher.code, pump=1)
    assert first["ok"] and first["result"] == {"voucher": voucher.voucher_id, "product": "diesel",
                                               "volume_cl": 2000}
    again = ask(env, "voucher_redeem", code=voucher.code, pump=2)
    assert again["reason"] == sv.ServiceReason.VOUCHER_USED
    assert ask(env, "voucher_release", voucher=voucher.voucher_id)["ok"]
    with env.sessions() as s:
        assert s.scalar(select(Voucher.status)) == "issued"
    assert ask(env, "voucher_redeem", code=voucher.code, pump=2)["ok"]
