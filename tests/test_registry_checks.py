"""registry.checks and registry.service.record_sale on sales that cannot be true (issue 10).

Each is stored held: flagged, acknowledged "held", never counted in a wallet's usage; a second version
of a stored sale is a conflict, kept apart and rejected. tests/test_registry_postgres.py runs the same
tests on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import create_engine, select
from test_registry_service import ACME, NOW, PIN_KEY, SEED_DOC, Env, make_pre_kind_database, sqlite_env

from contracts import messages as m
from contracts.panseal import derive_pan_key, seal_pan
from registry.checks import CLOCK_AHEAD, MAX_AGE, MAX_SALE_CL
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import Authorization, Device, SaleConflict, Transaction
from registry.service import authorize, held_sales, sale_conflicts


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


FUTURE = NOW + CLOCK_AHEAD + dt.timedelta(seconds=1)
PAST = NOW - MAX_AGE - dt.timedelta(seconds=1)


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _held(env: Env, sale_id: str) -> tuple[bool, list[str]]:
    tx = env.transaction(sale_id)
    return tx.held, tx.flags.split(",") if tx.flags else []


# what the issue lists, each as the fields that make the sale untrue, and the flag it gets
UNTRUE: list[tuple[dict[str, Any], str]] = [
    ({"volume_cl": 10**7, "amount_cents": 10**8}, "volume_over_ceiling"),         # 100,000 L for 1,000,000
    ({"amount_cents": 1}, "amount_mismatch"),                                       # not volume times price
    ({"terminal": "T-9999"}, "unknown_terminal"),
    ({"station": "ST-404"}, "wrong_station"),
    ({"finished_at": "9999-12-31T00:00:00Z"}, "finished_in_future"),
    ({"finished_at": stamp(FUTURE)}, "finished_in_future"),
    ({"finished_at": stamp(PAST)}, "finished_too_long_ago"),
    ({"finished_at": "1970-01-01T00:00:00Z"}, "finished_too_long_ago"),
    ({"product": "petrol95"}, "product_mismatch"),
    ({"nozzle": 9}, "unknown_nozzle"),
    ({"pump": 31}, "unknown_nozzle"),
]


@pytest.mark.parametrize(("over", "flag"), UNTRUE)
def test_untrue_fleet_sale_is_held_and_never_counted(env: Env, over: dict[str, Any], flag: str) -> None:
    a = env.auth(ACME)
    assert env.usage(1) == 15_000                      # the hold
    doc, ack = env.sale(a["auth_id"], **over)
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": "held"}
    held, flags = _held(env, doc["sale_id"])
    assert held and flag in flags
    if over.get("terminal") is None:                   # its own terminal's authorization: used, released
        with env.sessions() as s:
            auth = s.get(Authorization, a["auth_id"])
            assert auth is not None and auth.status == "completed"
    assert env.usage(1) == (0 if "terminal" not in over else 15_000)
    assert env.record(doc)["status"] == "duplicate"    # the terminal stops resending it
    with env.sessions() as s:
        assert [t.sale_id for t in held_sales(s)] == [doc["sale_id"]]


@pytest.mark.parametrize(("over", "flag"), UNTRUE)
def test_untrue_bank_sale_is_held(env: Env, over: dict[str, Any], flag: str) -> None:
    doc, ack = env.sale(None, kind="bank", card_masked="476173******0010", **over)
    assert ack["reason"] == "held"
    held, flags = _held(env, doc["sale_id"])
    assert held and flag in flags


def test_plausible_sales_are_counted(env: Env) -> None:
    for over in ({}, {"finished_at": stamp(NOW + CLOCK_AHEAD)}, {"finished_at": stamp(NOW - MAX_AGE)},
                 {"volume_cl": 0, "amount_cents": 0, "nozzle": 0, "product": None, "price_milli": 0},
                 {"volume_cl": 2345, "amount_cents": 3891}):    # a pump's rounding from finer volume
        doc, ack = env.sale(env.auth(ACME)["auth_id"], **over)
        assert ack["reason"] == "", over
        assert _held(env, doc["sale_id"]) == (False, [])
    doc, ack = env.sale(None, kind="bank", card_masked="476173******0010", volume_cl=MAX_SALE_CL,
                        amount_cents=MAX_SALE_CL * 1659 // 1000)
    assert ack["reason"] == "" and not env.transaction(doc["sale_id"]).held
    with env.sessions() as s:
        assert held_sales(s) == []


def test_fleet_sale_a_little_over_its_authorization_is_booked_far_over_held(env: Env) -> None:
    """A pump that ran a little past its preset: the fuel was taken, the account pays it, an operator sees
    the flag; far past it (registry.checks.overrun_cl) the figures are not believed: held."""
    a = env.auth(ACME)
    doc, ack = env.sale(a["auth_id"], volume_cl=15_300)               # 2 % past 150 L
    assert ack["reason"] == ""
    assert _held(env, doc["sale_id"]) == (False, ["preset_overrun"])
    assert env.usage(1) == 15_300
    far, ack = env.sale(env.auth(ACME)["auth_id"], volume_cl=15_301)
    assert ack["reason"] == "held" and _held(env, far["sale_id"]) == (True, ["over_authorized"])
    assert env.usage(1) == 15_300


def test_fleet_sale_at_another_price_is_booked_and_flagged(env: Env) -> None:
    """The registry's price changed while the terminal sold at the one it had: what the pump showed is
    charged."""
    doc, ack = env.sale(env.auth(ACME)["auth_id"], price_milli=1700, amount_cents=(2000 * 1700 + 500) // 1000)
    assert ack["reason"] == ""
    assert _held(env, doc["sale_id"]) == (False, ["price_mismatch"])
    assert env.usage(1) == 2000


def test_sale_from_an_inactive_terminal_is_held(env: Env) -> None:
    a = env.auth(ACME)
    with env.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        device.status = "retired"
        s.commit()
    doc, ack = env.sale(a["auth_id"])
    assert ack["reason"] == "held" and "inactive_terminal" in _held(env, doc["sale_id"])[1]


def test_sale_dated_9999_does_not_exhaust_a_wallet_in_later_months(env: Env) -> None:
    """The issue's case: 10^7 cl dated 9999 made a wallet answer "limit exhausted" every month after."""
    doc, _ = env.sale(env.auth(ACME)["auth_id"], volume_cl=10**7, amount_cents=(10**7 * 1659 + 500) // 1000,
                      finished_at="9999-01-01T00:00:00Z")
    assert env.transaction(doc["sale_id"]).held
    for later in (NOW + dt.timedelta(days=40), dt.datetime(2029, 12, 15)):     # the card expires 12/29
        assert env.usage(1, later) == 0
        assert env.auth(ACME, now=later)["approved"]


def test_identical_resend_is_a_duplicate_and_counted_once(env: Env) -> None:
    doc, _ = env.sale(env.auth(ACME)["auth_id"])
    for _ in range(3):
        assert env.record(doc) == {"sale_id": doc["sale_id"], "status": "duplicate", "reason": ""}
    assert env.count(Transaction) == 1 + len(SEED_DOC["usage"])      # and the seed's usage rows
    assert env.usage(1) == 2000
    with env.sessions() as s:
        assert sale_conflicts(s) == []


@pytest.mark.parametrize("over", [{"volume_cl": 2100, "amount_cents": 3484}, {"amount_cents": 3317},
                                  {"finished_at": "2025-03-15T11:59:01Z"}, {"kind": "bank"}])
def test_different_resend_is_a_conflict_kept_apart_and_raised(
        env: Env, over: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    doc, _ = env.sale(env.auth(ACME)["auth_id"])
    other = {**doc, **over}
    with caplog.at_level(logging.ERROR, "registry.service"):
        ack = env.record(other)
    assert ack == {"sale_id": doc["sale_id"], "status": "rejected", "reason": "conflict"}
    alarms = [r for r in caplog.records if getattr(r, "alarm", None) == "sale_conflict"]
    assert len(alarms) == 1 and alarms[0].sale_id == doc["sale_id"]        # type: ignore[attr-defined]
    assert env.record(other)["reason"] == "conflict"                        # raised once, kept once
    tx = env.transaction(doc["sale_id"])
    assert (tx.volume_cl, tx.amount_cents) == (2000, 3318)                   # the first version stands
    assert env.usage(1) == 2000
    with env.sessions() as s:
        conflicts = sale_conflicts(s)
        assert [(c.sale_id, c.device_id, c.received_at) for c in conflicts] == [
            (doc["sale_id"], "T-0001", NOW)]
        assert json.loads(conflicts[0].payload) == other
        assert s.scalar(select(SaleConflict.id).where(SaleConflict.sale_id == str(uuid.uuid4()))) is None
    assert env.record(doc)["status"] == "duplicate"                          # the stored one is still known


def make_pre_held_database(url: str) -> str:
    """The tables as a registry from before transactions.held left them, holding one sale; its sale_id."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        sale_id = make_pre_kind_database(engine)         # and then the kind column it added
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE transactions ADD COLUMN kind VARCHAR(32) NOT NULL "
                                 "DEFAULT 'fleet'")
            conn.exec_driver_sql("ALTER TABLE transactions DROP COLUMN held")
            conn.exec_driver_sql("DROP TABLE sale_conflicts")
    finally:
        engine.dispose()
    return sale_id


def check_database_from_before_held_sales_is_upgraded(url: str, tmp_path: Path) -> None:
    old_sale = make_pre_held_database(url)
    for _ in range(2):                                    # the second opening finds nothing to do
        engine, sessions = open_database(url)
        try:
            env = Env(tmp_path, engine, sessions, load_or_create_keys(tmp_path / "keys.json"))
            assert env.transaction(old_sale).held is False
            doc, ack = env.sale(None, kind="bank", terminal="T-9999")
            assert ack["reason"] == "held" and env.transaction(doc["sale_id"]).held
            assert env.record({**doc, "volume_cl": 1})["reason"] == "conflict"
        finally:
            engine.dispose()


def test_database_from_before_held_sales_is_upgraded(tmp_path: Path) -> None:
    check_database_from_before_held_sales_is_upgraded(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)


# -- a terminal releases an authorization whose answer never came (crash window 7) --------------------------

def _release(env: Env, request_id: str) -> dict[str, Any]:
    _, ack = env.sale(request_id, volume_cl=0, amount_cents=0, nozzle=0, product=None, price_milli=0,
                       flags=["unanswered_authorization"],
                       sale_id=str(uuid.uuid5(uuid.NAMESPACE_URL, request_id)))
    return ack


def test_sale_of_nothing_releases_a_hold_whose_answer_was_lost(env: Env) -> None:
    a = env.auth(ACME)
    assert env.usage(1) == 15_000
    assert _release(env, a["auth_id"]) == {"sale_id": str(uuid.uuid5(uuid.NAMESPACE_URL, a["auth_id"])),
                                           "status": "stored", "reason": ""}
    assert env.usage(1) == 0
    with env.sessions() as s:
        auth = s.get(Authorization, a["auth_id"])
        assert auth is not None and auth.status == "completed" and held_sales(s) == []


def test_release_of_a_request_never_received_is_not_held_and_bars_the_request(env: Env) -> None:
    request_id = str(uuid.uuid4())
    assert _release(env, request_id)["reason"] == ""          # nothing to review: nothing was granted
    req_doc = env.auth(ACME)                                   # another request goes through
    assert req_doc["approved"]
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.auth_id == request_id))
        assert tx is not None and not tx.held and tx.flags == "unanswered_authorization,unknown_authorization"
    # the request itself, arriving late, grants nothing: the terminal already gave up on it
    where = {"terminal": "T-0001", "station": "ST-001"}
    sealed = seal_pan(derive_pan_key(PIN_KEY), ACME, request_id=request_id, **where)
    late = {"request_id": request_id, **where, "pump": 1, "pan_sealed": sealed, "expiry": "2912",
            "pin_block": encipher_pinblock_iso_4(PIN_KEY, "1234", ACME).hex().upper(),
            "medium": "chip", "prompts": {}}
    with env.sessions() as s:
        answer = authorize(s, env.keys, m.decode(m.encode(late, m.AUTH_REQUEST), m.AUTH_REQUEST), NOW)
    assert not answer.approved and answer.reason is not None and answer.reason.value == "do_not_honour"
    assert env.usage(1) == 15_000                              # only the other request's hold


def test_a_second_release_of_one_hold_is_not_held(env: Env) -> None:
    """The terminal's timeout release and its crash recovery can both close one hold: nothing to review."""
    a = env.auth(ACME)
    assert _release(env, a["auth_id"])["reason"] == ""
    _, again = env.sale(a["auth_id"], volume_cl=0, amount_cents=0, nozzle=0, product=None, price_milli=0)
    assert again == {"sale_id": again["sale_id"], "status": "stored", "reason": ""}
    _, fuel = env.sale(a["auth_id"], volume_cl=1000)          # fuel on a used authorization still is
    assert fuel["reason"] == "held"
    with env.sessions() as s:
        assert [tx.volume_cl for tx in held_sales(s)] == [1000]
    assert env.usage(1) == 0
