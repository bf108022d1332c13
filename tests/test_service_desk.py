"""The registry's answers to service requests (registry.service_desk) on a seeded SQLite registry: requests
built and read back exactly as the wire carries them, card numbers sealed under the device's PIN key."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select, text
from test_registry_service import EXTRA_CARDS, NOW, PIN_KEY, SEED_DOC, Env, sqlite_env

from contracts import service_messages as sv
from contracts.panseal import derive_pan_key, seal_pan
from registry import attendants, prepaid, vouchers
from registry import service_desk_ticket as tickets
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.loyalty import admin, convert, points, rewards
from registry.models import (
    Attendant,
    AuditEntry,
    Base,
    LoyaltyFlag,
    Movement,
    RewardStock,
    ShiftReport,
    Station,
    Voucher,
    Wallet,
)
from registry.seed import apply_seed
from registry.service_desk import answer

LOYAL = "7077009000000012"
STRANGER = "7077009000000095"
GIFT = "7077008000000014"
pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)
CLERK = "7077007000000016"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def ask(env: Env, op: str, *, card: str | None = None, code: str | None = None, target: str | None = None,
        now: dt.datetime = NOW, rid: str | None = None, **fields: Any) -> dict[str, Any]:
    """A request as T-0001 sends it, answered, the answer checked against the wire schema."""
    rid = rid or str(uuid.uuid4())
    req: dict[str, Any] = {"request_id": rid, "terminal": "T-0001", "station": "ST-001", "op": op, **fields}
    key = derive_pan_key(PIN_KEY)
    for field, number in (("card_sealed", card), ("code_sealed", code), ("target_sealed", target)):
        if number is not None:
            req[field] = seal_pan(key, number, request_id=rid, terminal="T-0001", station="ST-001")
    req = sv.decode_request(sv.encode_request(req))
    with env.sessions() as s:
        doc = answer(s, env.keys, req, now)
    return sv.decode_response(sv.encode_response(doc))


def signed(env: Env, attendant: str = "A-1", *, terminal: str = "T-0001", at: dt.datetime = NOW
           ) -> dict[str, Any]:
    """The fields of an attendant's request: who, and the ticket a sign-in at `terminal` at `at` answers."""
    return {"attendant": attendant, "ticket": tickets.issue(env.keys, attendant, terminal, at)}


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
    got = ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=1, handed_over=True)
    assert got["ok"] and got["result"]["balance"] == 400 and got["result"]["status"] == "handed_over"
    with env.sessions() as s:
        assert s.scalar(select(RewardStock.quantity)) == 1
    ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=1, handed_over=True)
    third = ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=1, handed_over=True)
    assert third["reason"] == sv.ServiceReason.OUT_OF_STOCK
    ordered = ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=1, handed_over=False)
    assert ordered["result"]["status"] == "pending" and ordered["result"]["balance"] == 200


def test_redeeming_needs_the_points_and_a_known_attendant(env: Env, member: int) -> None:
    with env.sessions() as s:
        dear = rewards.add_reward(s, "Jacket", 900, actor="op", now=NOW)
        s.commit()
        dear_id = dear.id
    short = ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=dear_id, handed_over=False)
    assert short["reason"] == sv.ServiceReason.INSUFFICIENT_POINTS
    nobody = ask(env, "loyalty_redeem", card=LOYAL, **signed(env, "A-9"), reward=1, handed_over=False)
    assert nobody["reason"] == sv.ServiceReason.NOT_SIGNED_IN
    no_such = ask(env, "loyalty_redeem", card=LOYAL, **signed(env), reward=999, handed_over=False)
    assert no_such["reason"] == sv.ServiceReason.NOT_ALLOWED        # answered, not dropped
    with env.sessions() as s:
        assert points.points_wallet(s, member).balance == 500


def _pin(pin: str, number: str = CLERK) -> str:
    return encipher_pinblock_iso_4(PIN_KEY, pin, number).hex().upper()


def test_an_attendant_signs_in_and_wrong_pins_lock_them_out(env: Env, member: int) -> None:
    ok = ask(env, "attendant_signin", card=CLERK, pin_block=_pin("2580"))
    assert ok["ok"] and {k: v for k, v in ok["result"].items() if k != "ticket"} == {
        "attendant": "A-1", "name": "Ann", "role": "attendant"}
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
    got = ask(env, "topup", card=GIFT, **signed(env), amount_cents=10000)
    assert got["ok"] and (got["result"]["paid_cents"], got["result"]["bonus_cents"],
                          got["result"]["balance_cents"]) == (10000, 1000, 11000)
    with env.sessions() as s:
        wallet = s.scalars(select(Wallet).join(Movement, Movement.wallet_id == Wallet.id)
                           .where(Movement.kind == "bonus")).one()
        assert wallet.balance == s.scalar(select(func.sum(Movement.amount)).where(
            Movement.wallet_id == wallet.id)) == 11000
    assert ask(env, "topup", card=LOYAL, **signed(env), amount_cents=500)["reason"] == "not_allowed"


def test_a_voucher_is_redeemed_once_and_released_when_nothing_was_dispensed(env: Env, member: int) -> None:
    with env.sessions() as s:
        [voucher] = vouchers.issue(s, env.keys, product="diesel", volume_cl=2000, count=1, expires_on=None,
                                   now=NOW, actor="op")
        s.commit()
    took = str(uuid.uuid4())
    first = ask(env, "voucher_redeem", code=voucher.code, pump=1, rid=took)
    assert first["ok"] and first["result"] == {"voucher": voucher.voucher_id, "product": "diesel",
                                               "volume_cl": 2000}
    again = ask(env, "voucher_redeem", code=voucher.code, pump=2)
    assert again["reason"] == sv.ServiceReason.VOUCHER_USED
    stranger = ask(env, "voucher_release", voucher=voucher.voucher_id, request=str(uuid.uuid4()))
    assert stranger["reason"] == sv.ServiceReason.NOT_ALLOWED          # only the redeem that took it
    with env.sessions() as s:
        assert s.scalar(select(Voucher.status)) == "redeemed"
    assert ask(env, "voucher_release", voucher=voucher.voucher_id, request=took)["ok"]
    with env.sessions() as s:
        assert s.scalar(select(Voucher.status)) == "issued"
    assert ask(env, "voucher_redeem", code=voucher.code, pump=2)["ok"]


# -- sign-in tickets -----------------------------------------------------------------------------------------

def test_a_sign_in_answers_a_ticket_of_twelve_hours_for_this_attendant_and_terminal(env: Env,
                                                                                    member: int) -> None:
    got = ask(env, "attendant_signin", card=CLERK, pin_block=_pin("2580"))["result"]["ticket"]
    expiry, mac = got.split(".")
    assert int(expiry) == int((NOW + dt.timedelta(hours=12)).replace(tzinfo=dt.UTC).timestamp())
    # the construction the terminal side relies on, recomputed here from its definition
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"forecourt attendant ticket v1").derive(env.keys.card_key)
    assert mac == hmac.new(key, f"A-1|T-0001|{expiry}".encode(), hashlib.sha256).hexdigest()[:32]
    ticket = {"attendant": "A-1", "ticket": got}
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1, handed_over=True)["ok"]
    late = NOW + dt.timedelta(hours=12)
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1, handed_over=True,
               now=late - dt.timedelta(seconds=1))["ok"]
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1, handed_over=False,
               now=late)["reason"] == sv.ServiceReason.NOT_SIGNED_IN


def _flip_last(ticket: str) -> str:
    return ticket[:-1] + ("1" if ticket[-1] == "0" else "0")


@pytest.mark.parametrize("forged", ["other_terminal", "other_attendant", "tampered", "old_sign_in"])
def test_a_ticket_of_another_terminal_attendant_or_time_is_refused(env: Env, member: int,
                                                                   forged: str) -> None:
    with env.sessions() as s:
        attendants.add(s, "A-2", "Bo", actor="op", now=NOW)
        s.commit()
    fields = {"other_terminal": signed(env, terminal="T-0002"),
              "other_attendant": {**signed(env, "A-2"), "attendant": "A-1"},
              "tampered": {**signed(env), "ticket": _flip_last(signed(env)["ticket"])},
              "old_sign_in": signed(env, at=NOW - dt.timedelta(hours=12, seconds=1))}[forged]
    got = ask(env, "loyalty_redeem", card=LOYAL, **fields, reward=1, handed_over=True)
    assert got["reason"] == sv.ServiceReason.NOT_SIGNED_IN
    with env.sessions() as s:
        assert points.points_wallet(s, member).balance == 500


def test_a_ticket_stops_when_the_attendant_is_locked_or_moved_to_another_station(env: Env,
                                                                                 member: int) -> None:
    ticket = signed(env)
    with env.sessions() as s:
        attendants.lock(s, "A-1", actor="op", reason="left", now=NOW)
        s.commit()
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1,
               handed_over=True)["reason"] == sv.ServiceReason.NOT_SIGNED_IN
    with env.sessions() as s:
        attendants.unlock(s, "A-1", actor="op", reason="back", now=NOW)
        s.add(Station(id="ST-002", name="Other"))
        s.get_one(Attendant, "A-1").stations = "ST-002"
        s.commit()
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1,
               handed_over=True)["reason"] == sv.ServiceReason.NOT_SIGNED_IN
    with env.sessions() as s:
        s.get_one(Attendant, "A-1").stations = ""
        s.commit()
    assert ask(env, "loyalty_redeem", card=LOYAL, **ticket, reward=1, handed_over=True)["ok"]


def _booked(answered: dict[str, Any]) -> dict[str, Any]:
    """An answer's result but the points balance, which is the account's now."""
    return {k: v for k, v in answered["result"].items() if k != "balance"}


def test_a_booking_sent_again_after_its_ticket_expired_answers_what_was_booked(env: Env, member: int,
                                                                              gift: int) -> None:
    """An answer lost, the terminal asks again with the same request id: the ticket may have expired or
    the attendant been locked since; what was booked is answered, nothing new is let through."""
    ids = {op: str(uuid.uuid4()) for op in ("loyalty_redeem", "loyalty_convert", "topup")}
    fields: dict[str, dict[str, Any]] = {
        "loyalty_redeem": {"card": LOYAL, "reward": 1, "handed_over": True},
        "loyalty_convert": {"card": LOYAL, "target": GIFT, "points": 100},
        "topup": {"card": GIFT, "amount_cents": 500}}
    ticket = signed(env)
    first = {op: ask(env, op, **fields[op], **ticket, rid=rid) for op, rid in ids.items()}
    assert all(a["ok"] for a in first.values())
    with env.sessions() as s:
        attendants.lock(s, "A-1", actor="op", reason="left", now=NOW)
        s.commit()
    later = NOW + dt.timedelta(hours=13)
    for op, rid in ids.items():
        again = ask(env, op, **fields[op], **ticket, rid=rid, now=later)
        assert again["ok"] and _booked(again) == _booked(first[op])
        assert ask(env, op, **fields[op], **ticket, now=later)["reason"] == sv.ServiceReason.NOT_SIGNED_IN
        forged = {**ticket, "ticket": _flip_last(ticket["ticket"])}
        assert ask(env, op, **fields[op], **forged, rid=rid, now=later)["reason"] == "not_signed_in"
    with env.sessions() as s:
        assert points.points_wallet(s, member).balance == 300 and _balance_is_its_movements(s, gift) == 600


# -- points converted to credit ------------------------------------------------------------------------------

@pytest.fixture
def gift(env: Env, member: int) -> int:
    """A gift card (one credit) and a conversion table of a cent a point from 100 points; its wallet id."""
    with env.sessions() as s:
        card = prepaid.issue(s, env.keys, kind="gift", number=GIFT, expiry="2912", actor="op", now=NOW)
        convert.set_table(s, [(100, 1000)], actor="op", now=NOW)
        s.commit()
        return card.wallet_ids[0]


def _balance_is_its_movements(s: Any, wallet_id: int) -> int:
    wallet = s.get_one(Wallet, wallet_id)
    assert wallet.balance == s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                                      .where(Movement.wallet_id == wallet_id))
    return int(wallet.balance)


def test_points_convert_to_credit_on_the_money_card_once_per_request(env: Env, member: int,
                                                                     gift: int) -> None:
    rid = str(uuid.uuid4())
    got = ask(env, "loyalty_convert", card=LOYAL, target=GIFT, **signed(env), points=300, rid=rid)
    assert got["ok"] and got["result"] == {"masked": got["result"]["masked"], "points": 300,
                                           "credit_cents": 300, "balance": 200}
    assert got["result"]["masked"].endswith("0014") and GIFT not in str(got)     # the credited card
    again = ask(env, "loyalty_convert", card=LOYAL, target=GIFT, **signed(env), points=300, rid=rid)
    assert again["result"] == got["result"]
    with env.sessions() as s:
        assert _balance_is_its_movements(s, gift) == 300
        assert points.points_wallet(s, member).balance == 200
        audited = s.scalars(select(AuditEntry).where(AuditEntry.action == "attendant.convert")).all()
        assert [(a.actor, a.subject) for a in audited] == [("attendant:A-1", f"wallet:{gift}")]
        assert s.scalar(select(func.count()).select_from(LoyaltyFlag)) == 0


def test_a_conversion_needs_the_points_a_money_card_and_an_unpooled_account(env: Env, member: int,
                                                                            gift: int) -> None:
    def convert_to(target: str, how_many: int = 100, card: str = LOYAL) -> str:
        got = ask(env, "loyalty_convert", card=card, target=target, **signed(env), points=how_many)
        return str(got["reason"])

    assert convert_to(GIFT, 501) == sv.ServiceReason.INSUFFICIENT_POINTS
    assert convert_to(GIFT, 99) == sv.ServiceReason.NOT_ALLOWED          # under the table's first band
    assert convert_to(LOYAL) == sv.ServiceReason.NOT_ALLOWED             # points are no money
    assert convert_to(STRANGER) == sv.ServiceReason.UNKNOWN_CARD
    assert convert_to(GIFT, card=STRANGER) == sv.ServiceReason.UNKNOWN_CARD
    with env.sessions() as s:
        pool = admin.create_account(s, "Pool", issued_on=NOW.date(), actor="op", now=NOW)
        admin.set_pool(s, member, pool.id, actor="op", now=NOW)
        s.commit()
    assert convert_to(GIFT) == sv.ServiceReason.POOLED
    with env.sessions() as s:
        assert points.points_wallet(s, member).balance == 500 and _balance_is_its_movements(s, gift) == 0


def test_an_attendant_crediting_their_own_card_is_flagged_and_done(env: Env, member: int, gift: int) -> None:
    with env.sessions() as s:
        attendants.set_card(s, env.keys, "A-1", GIFT, actor="op", now=NOW)     # the gift card is theirs
        s.commit()
    assert ask(env, "loyalty_convert", card=LOYAL, target=GIFT, **signed(env), points=100)["ok"]
    rid = str(uuid.uuid4())
    for _ in range(2):
        assert ask(env, "topup", card=GIFT, **signed(env), amount_cents=500, rid=rid)["ok"]
    with env.sessions() as s:
        flags = s.scalars(select(LoyaltyFlag).order_by(LoyaltyFlag.id)).all()
        assert [(f.kind, f.attendant_id) for f in flags] == [("own_card", "A-1")] * 2
        assert "top-up" in flags[1].detail and _balance_is_its_movements(s, gift) == 600


# -- top-ups -------------------------------------------------------------------------------------------------

def test_a_topup_goes_to_the_credit_named_and_is_audited_once(env: Env, member: int) -> None:
    with env.sessions() as s:
        card = prepaid.issue(s, env.keys, kind="prepaid", number=GIFT, expiry="2912", actor="op", now=NOW,
                             credits=(prepaid.Credit(name="fuel"), prepaid.Credit(name="shop")))
        s.commit()
        fuel, shop = card.wallet_ids
    assert ask(env, "topup", card=GIFT, **signed(env), amount_cents=700)["reason"] == "not_allowed"
    rid = str(uuid.uuid4())
    first = ask(env, "topup", card=GIFT, **signed(env), amount_cents=700, wallet=shop, rid=rid)
    again = ask(env, "topup", card=GIFT, **signed(env), amount_cents=700, wallet=shop, rid=rid)
    assert first["ok"] and again["result"] == first["result"]
    with env.sessions() as s:
        assert _balance_is_its_movements(s, shop) == 700 and _balance_is_its_movements(s, fuel) == 0
        assert s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "attendant.topup")).all() == [
            f"wallet:{shop}"]


# -- Z reports and vouchers by the station's clock ---------------------------------------------------------

def _z(shift: int, **change: Any) -> dict[str, Any]:
    nothing = {"sales": 0, "volume_cl": 0, "amount_cents": 0, "charged_cents": 0}
    return {"shift": shift, "attendant": "A-1", "opened_at": "2025-03-15T06:00:00Z",
            "closed_at": "2025-03-15T11:00:00Z", "after_seq": 0, "last_seq": 0, "total": nothing,
            "by_product": {}, "by_payment": {}, "by_attendant": {}, "topups_cents": 0, "cash_cents": 0,
            "actions": [], **change}


@pytest.mark.parametrize("change", [{"closed_at": "2025-02-30T11:00:00Z"},
                                    {"opened_at": "2025-03-15T24:00:00Z"}, {"attendant": "A-" + "1" * 20}])
def test_a_z_report_that_can_never_be_stored_is_refused_not_left_to_resend(env: Env, member: int,
                                                                          change: dict[str, Any]) -> None:
    assert ask(env, "shift_close", **_z(7, **change))["reason"] == sv.ServiceReason.NOT_ALLOWED
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ShiftReport)) == 0


def test_a_z_report_audits_only_this_stations_attendants_actions_once(env: Env, member: int) -> None:
    with env.sessions() as s:
        s.add(Station(id="ST-002", name="Other"))
        s.flush()
        attendants.add(s, "A-2", "Bo", stations="ST-002", actor="op", now=NOW)
        attendants.add(s, "A-3", "Cy", stations="ST-001,ST-002", actor="op", now=NOW)
        s.commit()

    def act(who: str, what: str, at: str = "2025-03-15T07:00:00Z") -> dict[str, str]:
        return {"at": at, "attendant": who, "action": what, "subject": "pump:1"}

    actions = [act("A-1", "reprint"), act("A-2", "reprint"), act("A-3", "clear_pump"), act("A-9", "reprint"),
               act("A-1", "topup"), act("A-1", "x_report", at="2025-03-15T25:00:00Z"), act("A-1", "dance")]
    assert ask(env, "shift_close", **_z(8, actions=actions))["result"] == {"stored": True}
    assert ask(env, "shift_close", **_z(8, actions=actions))["result"] == {"stored": False}

    with env.sessions() as s:
        audited = s.execute(select(AuditEntry.actor, AuditEntry.action).where(
            AuditEntry.actor.like("attendant:%"), AuditEntry.action != "attendant.add")
            .order_by(AuditEntry.id)).all()
        assert [tuple(a) for a in audited] == [("attendant:A-1", "attendant.reprint"),
                                               ("attendant:A-3", "attendant.clear_pump")]
        assert s.scalar(select(ShiftReport.attendant_id)) == "A-1"


def test_a_voucher_expires_at_the_end_of_its_last_day_on_the_stations_clock(env: Env, member: int) -> None:
    with env.sessions() as s:
        s.get_one(Station, "ST-001").timezone = "Pacific/Auckland"      # UTC+13 in March 2025
        [voucher] = vouchers.issue(s, env.keys, product="diesel", volume_cl=2000, count=1,
                                   expires_on=NOW.date(), now=NOW - dt.timedelta(days=1), actor="op")
        s.commit()
    # NOW is 12:00 UTC on its last day, 01:00 on the day after in Auckland
    assert ask(env, "voucher_redeem", code=voucher.code, pump=1)["reason"] == sv.ServiceReason.VOUCHER_EXPIRED
    assert ask(env, "voucher_redeem", code=voucher.code, pump=1, now=NOW - dt.timedelta(hours=12))["ok"]


# -- the same on PostgreSQL ----------------------------------------------------------------------------------

def _past_the_seeds_ids(s: Any) -> None:
    """The seed writes its rows' ids itself, which moves no PostgreSQL sequence: move each past them."""
    for table in Base.metadata.sorted_tables:
        column = table.columns.get("id")
        if column is not None and column.autoincrement is not False and column.type.python_type is int:
            s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                           f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"))
    s.commit()


class TestOnBothDatabases:
    """Requests at once, and a column's size, where SQLite and PostgreSQL differ (a private cluster)."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def env(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
        url = pg_env.database_url(request, tmp_path)
        engine, sessions = open_database(url)
        if engine.dialect.name == "postgresql":     # the module's cluster: each test from its seed alone
            Base.metadata.drop_all(engine)
            Base.metadata.create_all(engine)
        keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
        with sessions() as s:
            apply_seed(s, keys, SEED_DOC, NOW)
            apply_seed(s, keys, EXTRA_CARDS, NOW)
            if engine.dialect.name == "postgresql":
                _past_the_seeds_ids(s)
        try:
            yield Env(tmp_path / "registry.db", engine, sessions, keys)
        finally:
            engine.dispose()

    def test_the_same_conversion_sent_at_once_is_booked_and_audited_once(self, env: Env, member: int,
                                                                          gift: int) -> None:
        rid, fields = str(uuid.uuid4()), signed(env)
        answers: list[dict[str, Any]] = []

        def send() -> None:
            answers.append(ask(env, "loyalty_convert", card=LOYAL, target=GIFT, **fields, points=300,
                               rid=rid))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [a["result"] for a in answers if a["ok"]]
        # SQLite may say "unavailable" to one that found the database busy: the terminal sends it again
        busy = [a["reason"] for a in answers if not a["ok"]]
        assert len(answers) == 4 and done and all(r == done[0] for r in done)
        assert busy == [] if env.engine.dialect.name == "postgresql" else set(busy) <= {"unavailable"}
        with env.sessions() as s:
            assert _balance_is_its_movements(s, gift) == 300
            assert points.points_wallet(s, member).balance == 200
            assert s.scalar(select(func.count()).select_from(AuditEntry)
                            .where(AuditEntry.action == "attendant.convert")) == 1

    def test_a_z_report_whose_attendant_id_overflows_the_column_is_refused(self, env: Env,
                                                                            member: int) -> None:
        got = ask(env, "shift_close", **_z(9, attendant="A" * 17))
        assert got["reason"] == sv.ServiceReason.NOT_ALLOWED
        assert ask(env, "shift_close", **_z(9, attendant="A" * 16))["result"] == {"stored": True}


def test_a_voucher_sale_that_dispensed_spends_it_and_a_sale_naming_another_is_flagged(env: Env) -> None:
    with env.sessions() as s:
        issued = vouchers.issue(s, env.keys, product="diesel", volume_cl=2000, count=2, expires_on=None,
                                now=NOW, actor="op")
        s.commit()
    taken, never = issued
    assert ask(env, "voucher_redeem", code=taken.code, pump=1)["ok"]
    voucher_sale = {"kind": "voucher", "card_masked": "*" * 15 + taken.code[-4:]}
    sale, ack = env.sale(None, 2000, voucher=taken.voucher_id, **voucher_sale)
    stray, _ = env.sale(None, 1000, voucher=never.voucher_id, **voucher_sale)
    assert ack["status"] == "stored"
    with env.sessions() as s:
        assert s.get(Voucher, taken.voucher_id).sale_id == sale["sale_id"]
        assert s.get(Voucher, never.voucher_id).status == "issued"        # a sale cannot spend it
        assert not vouchers.release(s, taken.voucher_id, terminal="T-0001", now=NOW)
    assert "voucher_not_redeemed" in env.transaction(stray["sale_id"]).flags
    assert "voucher_not_redeemed" not in env.transaction(sale["sale_id"]).flags
