"""registry.service on a real SQLite file seeded from hostsim/fixtures/seed.toml."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import Engine, MetaData, Table, create_engine, func, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from contracts import messages as m
from contracts.cards import luhn_ok
from contracts.errors import ConfigError
from contracts.panseal import derive_pan_key, seal_pan
from contracts.reasons import DeclineReason
from registry import migrations
from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import (
    Account,
    Authorization,
    Base,
    Card,
    Device,
    Nozzle,
    Product,
    Station,
    Transaction,
    Wallet,
)
from registry.seed import apply_seed, load_seed
from registry.service import (
    AUTH_TTL,
    MAX_FILL_CL,
    MAX_PIN_TRIES,
    REGISTRY_PROGRAMS,
    authorize,
    record_sale,
    wallet_usage_cl,
)

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")      # device T-0001 in the seed
ACME = "7077001000000019"          # wallet 1: diesel, adblue; 1000 L a month
NORTHWIND = "7077001000000027"     # wallet 2: diesel only; 200 L a month, all used
ACME2 = "7077001000000035"         # wallet 1 too
EXPIRED = "7077001000000043"
BLOCKED = "7077001000000050"
UNKNOWN = "7077001000000068"
NOW = dt.datetime(2025, 3, 15, 12, 0, 0)

ADBLUE_ONLY = "7077001000000076"  # wallet 9 below: AdBlue only
EXTRA_CARDS = {
    "wallets": [{"id": 9, "account": 1, "products": ["adblue"], "monthly_limit_litres": 50.5}],
    "cards": [
        {"pan": EXPIRED, "expiry": "2502", "pin": "1234", "wallet": 1},
        {"pan": BLOCKED, "expiry": "2912", "pin": "1234", "wallet": 1, "status": "blocked"},
        {"pan": ADBLUE_ONLY, "expiry": "2912", "pin": "1234", "wallet": 9},
    ]}
SEED_DOC = load_seed(SEED)


def seed_nozzles(wallet: int, pump: int) -> list[int]:
    """The nozzles of a pump whose product the seed lets a wallet buy (the seed file may evolve)."""
    products = next(set(w["products"]) for w in SEED_DOC["wallets"] if w["id"] == wallet)
    return sorted(n["nozzle"] for n in SEED_DOC["nozzles"] if n["pump"] == pump and n["product"] in products)


class Env:
    def __init__(self, path: Path, engine: Engine, sessions: sessionmaker[Session],
                 keys: RegistryKeys) -> None:
        self.path, self.engine, self.sessions, self.keys = path, engine, sessions, keys

    def auth(self, pan: str = ACME, pin: str = "1234", pump: int = 1, *, now: dt.datetime = NOW,
             terminal: str = "T-0001", station: str = "ST-001", pin_block: str | None = None,
             block_pan: str | None = None, pan_key: bytes = PIN_KEY) -> dict[str, Any]:
        """An authorization as a terminal sends it: the PAN sealed under the key derived from pan_key."""
        rid = str(uuid.uuid4())
        req = {"request_id": rid, "terminal": terminal, "station": station, "pump": pump,
               "pan_sealed": seal_pan(derive_pan_key(pan_key), pan, request_id=rid, terminal=terminal,
                                      station=station),
               "expiry": "2912",
               "pin_block": (pin_block
                             or encipher_pinblock_iso_4(PIN_KEY, pin, block_pan or pan).hex().upper()),
               "medium": "chip", "prompts": {}}
        req = m.decode(m.encode(req, m.AUTH_REQUEST), m.AUTH_REQUEST)      # exactly what the wire carries
        with self.sessions() as s:
            answer = authorize(s, self.keys, req, now)
        assert answer.request_id == req["request_id"]
        doc = answer.to_doc()
        wire = m.decode(m.encode(doc, m.AUTH_RESPONSE), m.AUTH_RESPONSE)   # the answer always fits its schema
        assert m.AuthAnswer.from_doc(wire) == answer                       # and reads back as it was sent
        assert doc["reason"] == ("approved" if answer.approved else DeclineReason(doc["reason"]))
        return doc

    def sale(self, auth_id: str | None, volume_cl: int = 2000,
             **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        doc = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": auth_id, "terminal": "T-0001",
               "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": volume_cl,
               "amount_cents": (volume_cl * 1659 + 500) // 1000, "price_milli": 1659,
               "card_masked": "707700******0019", "finished_at": "2025-03-15T11:59:00.000000Z",
               "recovered": False, "flags": []}
        doc.update(over)
        doc = m.decode(m.encode(doc, m.SALE), m.SALE)
        return doc, self.record(doc)

    def record(self, doc: dict[str, Any], now: dt.datetime = NOW) -> dict[str, Any]:
        with self.sessions() as s:
            ack = record_sale(s, doc, now)
        m.encode(ack, m.SALE_ACK)
        return ack

    def transaction(self, sale_id: str) -> Transaction:
        with self.sessions() as s:
            tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
            assert tx is not None
            return tx

    def card(self, pan: str) -> Card:
        with self.sessions() as s:
            card = s.scalar(select(Card).where(Card.token == self.keys.token(pan)))
            assert card is not None
            return card

    def count(self, model: type, *where: Any) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def usage(self, wallet: int, now: dt.datetime = NOW) -> int:
        with self.sessions() as s:
            return wallet_usage_cl(s, wallet, now)


def forget_migrations(engine: Engine) -> None:
    """Drop the tables and Alembic's version: the database as a registry from before migrations found it."""
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


def make_unversioned_database(engine: Engine, revision: str = migrations.HELD) -> None:
    """The tables as they were at `revision`, without Alembic's version: a registry from before migrations
    (which stopped at r0003) left them so."""
    forget_migrations(engine)
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), revision)
        conn.exec_driver_sql("DROP TABLE alembic_version")


def make_pre_kind_database(engine: Engine) -> str:
    """The tables as a registry from before transactions.kind left them, holding one sale; its sale_id."""
    make_unversioned_database(engine)
    sale_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE transactions DROP COLUMN kind")
        old = Table("transactions", MetaData(), autoload_with=conn)
        assert "kind" not in old.columns
        conn.execute(old.insert().values(
            sale_id=sale_id, auth_id=str(uuid.uuid4()), device_id="T-0001", station_id="ST-001", pump=1,
            nozzle=1, product="diesel", volume_cl=2000, amount_cents=3318, price_milli=1659,
            card_masked="707700******0019", finished_at=dt.datetime(2025, 3, 1, 8, 0), received_at=NOW,
            recovered=False, flags=""))
    return sale_id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def sqlite_env(tmp_path: Path) -> Iterator[Env]:
    """A seeded SQLite registry (the fixture env; other test modules use it too)."""
    path = tmp_path / "registry.db"
    engine, sessions = open_database(f"sqlite:///{path}")
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
        apply_seed(s, keys, EXTRA_CARDS, NOW)
    try:
        yield Env(path, engine, sessions, keys)
    finally:
        engine.dispose()


# -- database and seed -------------------------------------------------------------------------------------

def test_sqlite_pragmas(env: Env) -> None:
    with env.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _counts(env: Env) -> dict[str, int]:
    return {model.__name__: env.count(model) for model in
            (Station, Product, Nozzle, Device, Account, Wallet, Card, Transaction)}


def seed_counts(extra: dict[str, Any] | None = None) -> dict[str, int]:
    """The rows the seed document (and extra) make: one per entry, a transaction per usage entry."""
    docs = [SEED_DOC, extra or {}]
    count = {name: sum(len(d.get(key, [])) for d in docs) for name, key in (
        ("Station", "stations"), ("Product", "products"), ("Nozzle", "nozzles"), ("Device", "devices"),
        ("Account", "accounts"), ("Wallet", "wallets"), ("Card", "cards"), ("Transaction", "usage"))}
    return count


def test_seed_contents(env: Env) -> None:
    assert _counts(env) == seed_counts(EXTRA_CARDS)
    with env.sessions() as s:
        w1, w2, w9 = s.get(Wallet, 1), s.get(Wallet, 2), s.get(Wallet, 9)
        assert w1 is not None and w2 is not None and w9 is not None
        assert w1.monthly_limit_cl == 100_000
        assert set(w1.allowed_products.split(",")) == set(SEED_DOC["wallets"][0]["products"])
        assert (w2.allowed_products, w2.monthly_limit_cl) == ("diesel", 20_000)
        assert (w9.allowed_products, w9.monthly_limit_cl) == ("adblue", 5_050)     # litres -> cl
    assert env.card(ACME).masked == "707700******0019"
    assert env.card(BLOCKED).status == "blocked"
    assert env.usage(2) == 20_000 and env.usage(1) == 0


def test_apply_seed_twice_is_idempotent(env: Env) -> None:
    before = _counts(env)
    verifier = env.card(ACME).pin_verifier
    with env.sessions() as s:
        apply_seed(s, env.keys, load_seed(SEED), NOW + dt.timedelta(hours=1))
        apply_seed(s, env.keys, EXTRA_CARDS, NOW)
    assert _counts(env) == before
    assert env.card(ACME).pin_verifier == verifier
    assert env.usage(2) == 20_000


def test_malformed_seed_is_a_config_error(env: Env, tmp_path: Path) -> None:
    with env.sessions() as s, pytest.raises(ConfigError, match="malformed"):
        apply_seed(s, env.keys, {"cards": [{"pan": "7077001000000084"}]}, NOW)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cards]\n")
    with pytest.raises(ConfigError):
        load_seed(bad)
    with pytest.raises(ConfigError):
        load_seed(tmp_path / "missing.toml")


def test_test_pans_are_luhn_valid() -> None:
    assert all(luhn_ok(p) for p in (ACME, NORTHWIND, ACME2, EXPIRED, BLOCKED, UNKNOWN, ADBLUE_ONLY))


# -- authorization -----------------------------------------------------------------------------------------

def test_approve_reserves_at_most_one_filling(env: Env) -> None:
    a = env.auth(ACME, pump=1)
    assert a["approved"] is True and a["reason"] == "approved"
    assert a["allowed_cl"] == min(100_000, MAX_FILL_CL) == 15_000
    assert a["nozzles"] == seed_nozzles(1, 1)
    assert a["card_masked"] == "707700******0019"
    with env.sessions() as s:
        row = s.get(Authorization, a["auth_id"])
        assert row is not None
        assert (row.status, row.allowed_cl, row.pump, row.device_id, row.wallet_id) == ("open", 15_000, 1,
                                                                                         "T-0001", 1)
        assert row.expires_at == NOW + AUTH_TTL
    assert env.usage(1) == 15_000


def test_nozzles_are_filtered_by_wallet_products(env: Env) -> None:
    for pump in (1, 2, 3):
        assert env.auth(ACME, pump=pump)["nozzles"] == seed_nozzles(1, pump)
    only = env.auth(ADBLUE_ONLY, pump=2)                  # pump 2: diesel (1) and adblue (2)
    # a card issued on one wallet before fleet accounts keeps that wallet's own 50.5 L a month (r0007)
    assert (only["approved"], only["nozzles"], only["allowed_cl"]) == (True, [2], 5_050)
    assert env.auth(ADBLUE_ONLY, pump=1)["reason"] == "product_not_allowed"


def test_open_authorizations_hold_litres_until_the_limit(env: Env) -> None:
    allowed = [env.auth(ACME if i % 2 else ACME2)["allowed_cl"] for i in range(7)]
    assert allowed == [15_000] * 6 + [10_000]              # 1000 L a month, shared by both cards
    last = env.auth(ACME)
    assert (last["approved"], last["reason"], last["allowed_cl"]) == (False, "limit_exhausted", 0)
    assert env.usage(1) == 100_000
    # held litres are released when the authorizations expire
    later = NOW + AUTH_TTL + dt.timedelta(seconds=1)
    assert env.usage(1, later) == 0
    assert env.auth(ACME, now=later)["allowed_cl"] == 15_000


def test_settled_sales_count_instead_of_the_hold(env: Env) -> None:
    a = env.auth(ACME)
    env.sale(a["auth_id"], volume_cl=2_500)
    assert env.usage(1) == 2_500
    assert env.auth(ACME)["allowed_cl"] == 15_000
    # next month the sale no longer counts
    assert env.usage(1, dt.datetime(2025, 4, 1, 0, 0, 1)) == 0


def test_remaining_below_one_filling_is_what_is_allowed(env: Env) -> None:
    a = env.auth(ACME)
    env.sale(a["auth_id"], volume_cl=15_000)
    for _ in range(5):
        env.sale(env.auth(ACME)["auth_id"], volume_cl=15_000)
    assert env.usage(1) == 90_000
    assert env.auth(ACME)["allowed_cl"] == 10_000


@pytest.mark.parametrize(("kw", "reason"), [
    ({"terminal": "T-9999"}, "do_not_honour"),
    ({"station": "ST-002"}, "do_not_honour"),            # a device answering for another station
])
def test_unknown_terminal(env: Env, kw: dict[str, Any], reason: str) -> None:
    a = env.auth(ACME, **kw)
    assert (a["approved"], a["reason"], a["auth_id"], a["allowed_cl"], a["nozzles"]) == (
        False, reason, None, 0, [])
    assert a["card_masked"] is None
    assert env.count(Authorization) == 0


def test_unknown_terminal_is_logged_as_such(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="registry.fleet.authorize")
    env.auth(ACME, terminal="T-9999")
    rec = next(r for r in caplog.records if r.getMessage() == "authorization declined")
    assert (vars(rec)["reason"], vars(rec)["why"], vars(rec)["terminal"]) == (
        "do_not_honour", "unknown_terminal", "T-9999")


def test_every_decline_reason_is_a_decline_reason_code(env: Env) -> None:
    """What the registry answers is one of contracts.reasons' codes, so a terminal shows the right text."""
    answers = [env.auth(UNKNOWN), env.auth(BLOCKED), env.auth(EXPIRED), env.auth(ACME, pump=9),
               env.auth(NORTHWIND, pump=4), env.auth(NORTHWIND, pump=1), env.auth(ACME, terminal="T-9999")]
    answers += [env.auth(ACME2, pin="0000") for _ in range(MAX_PIN_TRIES)]
    reasons = [DeclineReason(a["reason"]) for a in answers]
    assert reasons == [DeclineReason.UNKNOWN_CARD, DeclineReason.CARD_BLOCKED, DeclineReason.CARD_EXPIRED,
                       DeclineReason.PUMP_UNKNOWN, DeclineReason.PRODUCT_NOT_ALLOWED,
                       DeclineReason.LIMIT_EXHAUSTED, DeclineReason.DO_NOT_HONOUR,
                       DeclineReason.WRONG_PIN, DeclineReason.WRONG_PIN, DeclineReason.PIN_TRIES_EXCEEDED]


def test_inactive_terminal(env: Env) -> None:
    with env.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        device.status = "retired"
        s.commit()
    assert env.auth(ACME)["reason"] == "do_not_honour"


def test_unknown_card(env: Env) -> None:
    a = env.auth(UNKNOWN)
    assert (a["approved"], a["reason"], a["card_masked"]) == (False, "unknown_card", "707700******0068")


def test_wrong_pin_counts_to_blocked(env: Env) -> None:
    assert MAX_PIN_TRIES == 3
    first = env.auth(ACME, pin="0000")
    assert (first["reason"], first["pin_tries_left"]) == ("wrong_pin", 2)     # the terminal shows it
    assert env.card(ACME).pin_tries == 1
    second = env.auth(ACME, pin="9999")
    assert (second["reason"], second["pin_tries_left"]) == ("wrong_pin", 1)
    third = env.auth(ACME, pin="1111")
    assert (third["approved"], third["reason"]) == (False, "pin_tries_exceeded")
    assert "pin_tries_left" not in third                   # only a wrong_pin decline carries it
    card = env.card(ACME)
    assert (card.status, card.pin_tries) == ("temp_blocked", 3)
    # now even the right PIN is refused, and the counter does not move
    assert env.auth(ACME, pin="1234")["reason"] == "card_blocked"
    assert env.card(ACME).pin_tries == 3
    assert env.count(Authorization) == 0
    # the other card of the same wallet is unaffected
    assert env.auth(ACME2)["approved"] is True


def test_correct_pin_resets_the_counter(env: Env) -> None:
    env.auth(ACME, pin="0000")
    env.auth(ACME, pin="0000")
    assert env.card(ACME).pin_tries == 2
    ok = env.auth(ACME)
    assert ok["approved"] is True and "pin_tries_left" not in ok
    assert env.card(ACME).pin_tries == 0
    assert env.auth(ACME, pin="0000")["pin_tries_left"] == MAX_PIN_TRIES - 1     # counted afresh
    assert env.auth(ACME, pin="0000")["reason"] == "wrong_pin"
    assert env.card(ACME).status == "active"


def test_correct_pin_resets_the_counter_even_when_declined_later(env: Env) -> None:
    env.auth(ACME, pin="0000")
    env.auth(ACME, pin="0000")
    assert env.auth(ACME, pump=9)["reason"] == "pump_unknown"
    assert env.card(ACME).pin_tries == 0


@pytest.mark.parametrize("kw", [
    {"pin_block": "00" * 16},                                # garbage block
    {"pin_block": "FF" * 16},
    {"block_pan": ACME2},                                    # right PIN, enciphered for another card
    {"pin": "12345"},                                        # a longer PIN that starts with the right one
])
def test_bad_pin_blocks_are_wrong_pins(env: Env, kw: dict[str, Any]) -> None:
    assert env.auth(ACME, **kw)["reason"] == "wrong_pin"
    assert env.card(ACME).pin_tries == 1


def test_pin_block_under_another_key_is_a_wrong_pin(env: Env) -> None:
    block = encipher_pinblock_iso_4(bytes(16), "1234", ACME).hex().upper()
    assert env.auth(ACME, pin_block=block)["reason"] == "wrong_pin"


def test_blocked_card(env: Env) -> None:
    a = env.auth(BLOCKED)
    assert (a["approved"], a["reason"], a["card_masked"]) == (False, "card_blocked", "707700******0050")
    assert env.card(BLOCKED).pin_tries == 0


def test_expired_card(env: Env) -> None:
    a = env.auth(EXPIRED)                             # expiry 2502, today 2025-03
    assert (a["approved"], a["reason"]) == (False, "card_expired")
    # still valid in its own expiry month
    assert env.auth(EXPIRED, now=dt.datetime(2025, 2, 28, 23, 59))["approved"] is True
    assert env.auth(ACME, now=dt.datetime(2029, 12, 31, 23, 59))["approved"] is True
    assert env.auth(ACME, now=dt.datetime(2030, 1, 1))["reason"] == "card_expired"


def test_product_not_allowed(env: Env) -> None:
    a = env.auth(NORTHWIND, pump=4)                   # pump 4 has only petrol95; wallet 2 only diesel
    assert (a["approved"], a["reason"], a["nozzles"]) == (False, "product_not_allowed", [])
    assert env.auth(ADBLUE_ONLY, pump=4)["reason"] == "product_not_allowed"
    assert env.auth(ACME, pump=4)["reason"] == ("approved" if seed_nozzles(1, 4) else "product_not_allowed")


def test_pump_unknown(env: Env) -> None:
    assert env.auth(ACME, pump=9)["reason"] == "pump_unknown"


def test_limit_exhausted(env: Env) -> None:
    a = env.auth(NORTHWIND, pump=1)
    assert (a["approved"], a["reason"], a["allowed_cl"]) == (False, "limit_exhausted", 0)
    assert env.count(Authorization) == 0


def test_log_never_carries_the_pan(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.auth(ACME)
    env.auth(ACME, pin="0000")
    env.auth(UNKNOWN)
    for rec in caplog.records:
        assert ACME not in rec.getMessage() and UNKNOWN not in rec.getMessage()
        assert all(ACME not in str(v) and UNKNOWN not in str(v) for v in vars(rec).values())


# -- sales ---------------------------------------------------------------------------------------------------

def test_sale_stored_once_then_duplicate(env: Env) -> None:
    a = env.auth(ACME)
    doc, ack = env.sale(a["auth_id"])
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
    again = env.record(doc)
    assert again == {"sale_id": doc["sale_id"], "status": "duplicate", "reason": ""}
    assert env.count(Transaction, Transaction.sale_id == doc["sale_id"]) == 1
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        auth = s.get(Authorization, a["auth_id"])
        assert tx is not None and auth is not None
        assert ((tx.volume_cl, tx.amount_cents, tx.wallet_id, tx.device_id, tx.flags)
                == (2000, 3318, 1, "T-0001", ""))
        assert tx.card_id == env.card(ACME).id
        assert tx.finished_at == dt.datetime(2025, 3, 15, 11, 59)
        assert tx.received_at == NOW
        assert auth.status == "completed"


def test_sale_for_an_unknown_authorization_is_flagged(env: Env) -> None:
    doc, ack = env.sale(str(uuid.uuid4()), flags=["recovered_from_totals"])
    assert ack["status"] == "stored"
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        assert tx is not None
        assert tx.flags == "recovered_from_totals,unknown_authorization"
        assert tx.card_id is None and tx.wallet_id is None


def test_sale_against_another_terminals_authorization_is_flagged(env: Env) -> None:
    a = env.auth(ACME)
    doc, _ = env.sale(a["auth_id"], terminal="T-0002")
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        auth = s.get(Authorization, a["auth_id"])
        assert tx is not None and auth is not None
        assert "unknown_authorization" in tx.flags.split(",")
        assert auth.status == "open"        # the real terminal's authorization is untouched


def test_over_authorized_sale_is_flagged_and_stored(env: Env) -> None:
    a = env.auth(ACME)
    doc, ack = env.sale(a["auth_id"], volume_cl=15_001, flags=["totals_mismatch"])
    assert ack["status"] == "stored"
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        assert tx is not None and tx.flags == "totals_mismatch,preset_overrun"
    exact, _ = env.sale(env.auth(ACME)["auth_id"], volume_cl=15_000)
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == exact["sale_id"]))
        assert tx is not None and tx.flags == ""


def test_completing_releases_the_hold(env: Env) -> None:
    a = env.auth(ACME)
    assert env.usage(1) == 15_000
    env.sale(a["auth_id"], volume_cl=0)          # nozzle never lifted
    assert env.usage(1) == 0


# -- sales of any card program -----------------------------------------------------------------------------

def _auth_status(env: Env, auth_id: str) -> str:
    with env.sessions() as s:
        auth = s.get(Authorization, auth_id)
        assert auth is not None
        return auth.status


def test_fleet_is_the_program_the_registry_authorizes() -> None:
    assert REGISTRY_PROGRAMS == {"fleet"}


@pytest.mark.parametrize("kind", ["bank", "loyalty", "prepaid_gift", "v" * 32])
def test_sale_of_another_program_without_auth_id_is_stored_for_reports(env: Env, kind: str) -> None:
    a = env.auth(ACME)                                    # an open fleet hold on this terminal stays as it is
    doc, ack = env.sale(None, kind=kind, card_masked="476173******0010", flags=["recovered_from_totals"])
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.auth_id, tx.card_id, tx.wallet_id, tx.flags) == (
        kind, None, None, None, "recovered_from_totals")
    assert _auth_status(env, a["auth_id"]) == "open"
    assert env.usage(1) == 15_000                         # the hold, and nothing billed to a wallet
    assert env.record(doc)["status"] == "duplicate"


@pytest.mark.parametrize("kind", ["fleet", None])         # None: an older terminal, which sends no kind
def test_fleet_sale_without_auth_id_is_flagged_and_never_billed(env: Env, kind: str | None) -> None:
    """A hostile or broken terminal cannot pass a fleet sale off as one needing no authorization."""
    a = env.auth(ACME)
    doc = {"sale_id": str(uuid.uuid4()), "kind": kind, "auth_id": None, "terminal": "T-0001",
           "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 4000,
           "amount_cents": 6636, "price_milli": 1659, "card_masked": "707700******0019",
           "finished_at": "2025-03-15T11:59:00Z", "recovered": False, "flags": []}
    if kind is None:
        del doc["kind"]
    sale = m.decode(json.dumps({"v": 1, **doc}).encode(), m.SALE)
    ack = env.record(sale)
    assert ack["status"] == "stored"      # for review: "rejected" would have the terminal resend it forever
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.auth_id, tx.card_id, tx.wallet_id, tx.flags) == (
        "fleet", None, None, None, "unknown_authorization")
    assert _auth_status(env, a["auth_id"]) == "open"      # no authorization completed
    assert env.usage(1) == 15_000                         # the hold only: the 40 L are billed to no wallet


@pytest.mark.parametrize("kind", ["bank", "loyalty"])
def test_sale_of_another_program_with_an_auth_id_settles_it_and_is_flagged(env: Env, kind: str) -> None:
    """An auth_id is always checked and settled, whatever the program; a program the registry does not
    authorize has no business carrying one."""
    a = env.auth(ACME)
    doc, ack = env.sale(a["auth_id"], kind=kind, volume_cl=15_301)
    assert ack["status"] == "stored"
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.wallet_id, tx.card_id) == (kind, 1, env.card(ACME).id)
    assert tx.flags == "unexpected_authorization,over_authorized"
    assert _auth_status(env, a["auth_id"]) == "completed"
    again, _ = env.sale(a["auth_id"], kind=kind)
    assert env.transaction(again["sale_id"]).flags == "unexpected_authorization,authorization_reused"
    other, _ = env.sale(str(uuid.uuid4()), kind=kind)
    assert env.transaction(other["sale_id"]).flags == "unexpected_authorization,unknown_authorization"
    assert env.transaction(other["sale_id"]).wallet_id is None


def test_sale_of_another_program_cannot_settle_another_terminals_authorization(env: Env) -> None:
    a = env.auth(ACME)
    doc, _ = env.sale(a["auth_id"], kind="loyalty", terminal="T-0002")
    tx = env.transaction(doc["sale_id"])
    assert (tx.wallet_id, tx.flags, tx.held) == (
        None, "unknown_terminal,unexpected_authorization,unknown_authorization", True)
    assert _auth_status(env, a["auth_id"]) == "open"


# -- secrets -------------------------------------------------------------------------------------------------

def test_database_never_contains_a_pan_or_a_plain_pin(env: Env) -> None:
    env.auth(ACME)
    env.auth(ACME, pin="0000")
    env.auth(UNKNOWN)
    env.sale(env.auth(ACME2)["auth_id"])
    env.engine.dispose()                                  # checkpoint nothing away: scan every file
    files = [p for p in env.path.parent.iterdir() if p.name.startswith("registry.db")]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    for pan in (ACME, NORTHWIND, ACME2, EXPIRED, BLOCKED, UNKNOWN, ADBLUE_ONLY):
        assert pan.encode() not in blob
        assert pan.encode("utf-16-le") not in blob
    for card in (env.card(p) for p in (ACME, NORTHWIND, ACME2)):
        assert card.pin_verifier != "1234"
        assert len(card.pin_verifier) == 64 and int(card.pin_verifier, 16) >= 0
        assert card.pin_verifier != hashlib.sha256(b"1234").hexdigest()     # keyed, not a bare hash
        assert card.pin_verifier == env.keys.pin_verifier(card.token, "1234")
    # the same PIN on two cards gives two verifiers (bound to the card's token)
    assert env.card(ACME).pin_verifier != env.card(ACME2).pin_verifier
    assert env.card(ACME).token != ACME and len(env.card(ACME).token) == 32


def test_a_database_error_never_carries_its_bound_values(env: Env) -> None:
    """The engine hides bound parameters: a failing insert's error text (what a log would show) holds
    neither the card token nor the sealed number it tried to store."""
    existing = env.card(ACME)
    with env.sessions() as s, pytest.raises(DBAPIError) as failed:
        s.add(Card(token=existing.token, masked="****0000", account_id=existing.account_id, expiry="3012",
                   pin_verifier="", number_sealed="sealed-number-never-shown"))
        s.flush()
    shown = str(failed.value)
    assert "UNIQUE constraint failed: cards.token" in shown       # the error itself is still told
    assert existing.token not in shown and "sealed-number-never-shown" not in shown
    assert "parameters hidden" in shown


def test_keys_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "k" / "registry-keys.json"
    first = load_or_create_keys(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_keys(path) == first
    assert "secret" in repr(first) and first.card_key.hex() not in repr(first)
    path.write_text("{}")
    with pytest.raises(ConfigError, match="damaged"):
        load_or_create_keys(path)


def test_second_sale_on_one_authorization_is_flagged(env: Env) -> None:
    a = env.auth(ACME)
    first, _ = env.sale(a["auth_id"])
    second = {**first, "sale_id": str(uuid.uuid4())}
    assert env.record(second)["status"] == "stored"
    with env.sessions() as s:
        flags = {t.sale_id: t.flags for t in s.scalars(select(Transaction)).all()}
    assert "authorization_reused" not in flags[first["sale_id"]]
    assert "authorization_reused" in flags[second["sale_id"]]


# -- sale kinds ---------------------------------------------------------------------------------------------

def test_bank_sale_is_stored_for_reports_without_an_authorization(env: Env) -> None:
    held = env.auth(ACME)                                 # an open fleet authorization stays untouched
    doc, ack = env.sale(None, kind="bank", card_masked="476173******0010", flags=["recovered_from_totals"])
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.auth_id, tx.card_id, tx.wallet_id) == ("bank", None, None, None)
    assert tx.flags == "recovered_from_totals"            # no unknown_authorization: it has none here
    assert env.record(doc)["status"] == "duplicate"
    with env.sessions() as s:
        auth = s.get(Authorization, held["auth_id"])
        assert auth is not None and auth.status == "open"
    assert env.usage(1) == 15_000                         # a bank sale never counts against a wallet


def test_fleet_sale_without_an_authorization_id_is_flagged(env: Env) -> None:
    doc, ack = env.sale(None)
    assert ack["status"] == "stored"
    assert env.transaction(doc["sale_id"]).flags == "unknown_authorization"


def test_sale_from_a_terminal_before_bank_cards_is_stored_as_fleet(env: Env) -> None:
    a = env.auth(ACME)
    doc = {"sale_id": str(uuid.uuid4()), "auth_id": a["auth_id"], "terminal": "T-0001", "station": "ST-001",
           "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 2000, "amount_cents": 3318,
           "price_milli": 1659, "card_masked": "707700******0019", "finished_at": "2025-03-15T11:59:00Z",
           "recovered": False, "flags": []}                # no "kind"
    ack = env.record(m.decode(json.dumps({"v": 1, **doc}).encode(), m.SALE))
    assert ack["status"] == "stored"
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.wallet_id, tx.flags) == ("fleet", 1, "")
    assert env.usage(1) == 2000                           # settled against its authorization


# -- a database from an older registry ----------------------------------------------------------------------

def test_database_from_before_sale_kinds_is_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old_engine = create_engine(url)
    old_sale = make_pre_kind_database(old_engine)
    old_engine.dispose()
    for _ in range(2):                                    # the second opening finds nothing to do
        engine, sessions = open_database(url)
        try:
            env = Env(tmp_path, engine, sessions, load_or_create_keys(tmp_path / "keys.json"))
            assert env.transaction(old_sale).kind == "fleet"
            doc, ack = env.sale(None, kind="bank")
            assert ack["status"] == "stored" and env.transaction(doc["sale_id"]).kind == "bank"
            upgraded = {c["name"]: c for c in inspect(engine).get_columns("transactions")}
        finally:
            engine.dispose()
    fresh, _ = open_database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        made = {c["name"]: c for c in inspect(fresh).get_columns("transactions")}
    finally:
        fresh.dispose()
    assert upgraded["kind"]["nullable"] is False and "fleet" in str(upgraded["kind"]["default"])
    assert {k: str(v) for k, v in upgraded["kind"].items()} == {k: str(v) for k, v in made["kind"].items()}
