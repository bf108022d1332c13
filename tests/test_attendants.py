"""registry.attendants: credentials, the sign-in check with its lockout, the action audit and the attendants
of a device's signed configuration, on SQLite and PostgreSQL (tests/pg_env.py)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts.cards import luhn_ok
from contracts.errors import ConfigError
from contracts.panseal import derive_stop_key, stop_entry
from contracts.signing import PIN_ITERATIONS, check_body, pin_matches
from registry import attendants as att
from registry.configs import ConfigIssuer, build_body
from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys
from registry.loyalty_models import Attendant, LoyaltySetting
from registry.modelbase import Base
from registry.models import AuditEntry, Device, Station
from registry.seed import apply_seed, load_seed

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
FAST = 1000                     # PBKDF2 iterations in tests (the default's own test checks 600000)
PIN = "4071"

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


def number(serial: int) -> str:
    body = f"900100000000{serial:03d}"
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


@dataclass
class Db:
    engine: Engine
    sessions: sessionmaker[Session]
    keys: RegistryKeys


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    engine, sessions = open_database(pg_env.database_url(request, tmp_path))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
        s.add(Station(id="ST-002", name="Second", currency="EUR"))
        s.flush()
        s.add(Device(id="T-0002", station_id="ST-002", pin_key_hex=keys.seal_device_key(bytes(range(16))),
                     status="active"))
        s.commit()
    try:
        yield Db(engine, sessions, keys)
    finally:
        engine.dispose()


def make(s: Session, keys: RegistryKeys, ident: str = "A1", *, serial: int = 1, pin: str | None = PIN,
         role: str = "attendant", stations: str = "") -> Attendant:
    row = att.add(s, ident, f"Attendant {ident}", role=role, stations=stations, actor="op", now=NOW)
    att.set_card(s, keys, ident, number(serial), actor="op", now=NOW)
    if pin is not None:
        att.set_pin(s, ident, pin, actor="op", now=NOW, iterations=FAST)
    return row


def sign_in(s: Session, keys: RegistryKeys, pin: str = PIN, *, serial: int = 1, terminal: str = "T-0001",
            station: str = "ST-001") -> att.SignIn:
    return att.verify(s, keys, card_number=number(serial), pin=pin, terminal=terminal, station=station,
                      now=NOW)


def audits(s: Session) -> list[AuditEntry]:
    return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


# -- credentials ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pin", ["1111", "1234", "9876", "012345", "123", "1234567", "12a4", " 4071", "٤٠٧١"])
def test_trivial_or_malformed_pins_are_refused(pin: str) -> None:
    with pytest.raises(ConfigError) as err:
        att.check_pin(pin)
    assert err.value.context["key"] == "pin" and pin.strip() not in str(err.value)


@pytest.mark.parametrize("pin", ["4071", "1357", "1123", "2580", "909090"])
def test_other_pins_of_four_to_six_digits_are_taken(pin: str) -> None:
    assert att.check_pin(pin) == pin


@pytest.mark.parametrize(("ident", "name", "role", "stations", "key"), [
    ("", "Sam", "attendant", "", "id"), ("A" * 17, "Sam", "attendant", "", "id"),
    ("A 1", "Sam", "attendant", "", "id"), ("A1", "", "attendant", "", "name"),
    ("A1", "x" * 101, "attendant", "", "name"), ("A1", "Sam", "manager", "", "role"),
    ("A1", "Sam", "attendant", "ST-404", "stations"), ("A1", "Sam", "attendant", "ST 1", "stations"),
])
def test_add_refuses_bad_values(db: Db, ident: str, name: str, role: str, stations: str, key: str) -> None:
    with db.sessions() as s, pytest.raises(ConfigError) as err:
        att.add(s, ident, name, role=role, stations=stations, actor="op", now=NOW)
    assert err.value.context["key"] == key


def test_add_set_card_and_pin_keep_no_secret(db: Db) -> None:
    with db.sessions() as s:
        row = att.add(s, "A1", " Sam ", role="supervisor", stations="ST-002, ST-001", actor="op", now=NOW)
        with pytest.raises(ConfigError, match="taken"):
            att.add(s, "A1", "Other", actor="op", now=NOW)
        masked = att.set_card(s, db.keys, "A1", number(1), actor="op", now=NOW)
        att.set_pin(s, "A1", "2580", actor="op", now=NOW)             # the default iterations
        s.commit()
        assert (row.name, row.role, row.stations, row.status) == ("Sam", "supervisor", "ST-001,ST-002",
                                                                  "active")
        assert row.card_token == db.keys.token(number(1)) and masked == "900100******" + number(1)[-4:]
        verifier, sealed = row.pin_verifier, row.card_sealed or ""
        assert verifier.startswith("pbkdf2-sha256$600000$") and pin_matches(verifier, "2580")
        assert db.keys.open_number(sealed) == number(1)
        entries = audits(s)
        assert [e.action for e in entries] == ["attendant.add", "attendant.card", "attendant.pin"]
        assert {e.actor for e in entries} == {"op"} and {e.subject for e in entries} == {"attendant:A1"}
        assert json.loads(entries[1].detail)["masked"] == masked
        text = " ".join(f"{e.detail} {e.reason}" for e in entries)
        assert number(1) not in text and "2580" not in text


def test_a_card_is_one_attendants_until_they_are_withdrawn(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        att.add(s, "A2", "Kim", actor="op", now=NOW)
        with pytest.raises(ConfigError, match="another attendant"):
            att.set_card(s, db.keys, "A2", number(1), actor="op", now=NOW)
        att.withdraw(s, "A1", actor="op", reason="left", now=NOW)
        att.set_card(s, db.keys, "A2", number(1), actor="op", now=NOW)
        s.commit()
        a1, a2 = s.get(Attendant, "A1"), s.get(Attendant, "A2")
        assert a1 is not None and a2 is not None
        assert a1.card_token is None and "|" not in a1.pin_verifier
        assert a2.card_token == db.keys.token(number(1))
        assert audits(s)[-2].action == "attendant.card_moved"
        with pytest.raises(att.AttendantError, match="withdrawn"):
            att.set_pin(s, "A1", PIN, actor="op", now=NOW, iterations=FAST)


def test_status_moves(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        with pytest.raises(att.AttendantError, match="active"):
            att.unlock(s, "A1", actor="op", reason="x", now=NOW)
        with pytest.raises(ConfigError, match="reason"):
            att.lock(s, "A1", actor="op", reason=" ", now=NOW)
        assert att.lock(s, "A1", actor="op", reason="on leave", now=NOW).status == "locked"
        assert att.unlock(s, "A1", actor="op", reason="back", now=NOW).status == "active"
        assert att.withdraw(s, "A1", actor="op", reason="left", now=NOW).status == "withdrawn"
        with pytest.raises(att.AttendantError, match="withdrawn"):
            att.unlock(s, "A1", actor="op", reason="x", now=NOW)
        with pytest.raises(ConfigError, match="unknown attendant"):
            att.lock(s, "A9", actor="op", reason="x", now=NOW)
        assert [e.action for e in audits(s)][-3:] == ["attendant.lock", "attendant.unlock",
                                                      "attendant.withdraw"]


# -- sign-in --------------------------------------------------------------------------------------------

def test_sign_in_by_number_or_token(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1", role="supervisor")
        assert sign_in(s, db.keys) == att.SignIn(True, "ok", "A1", "supervisor")
        got = att.verify(s, db.keys, token=db.keys.token(number(1)), pin=PIN, terminal="T-0001",
                         station="ST-001", now=NOW)
        assert got.accepted
        with pytest.raises(ConfigError):
            att.verify(s, db.keys, pin=PIN, terminal="T-0001", station="ST-001", now=NOW)
        s.commit()
        last = audits(s)[-1]
        assert (last.actor, last.action, last.subject) == ("attendant:A1", "attendant.signin", "attendant:A1")
        assert json.loads(last.detail) == {"role": "supervisor", "station": "ST-001", "terminal": "T-0001"}


def test_wrong_pins_lock_out_at_the_limit_and_a_right_one_resets(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        assert [sign_in(s, db.keys, "0000").tries_left for _ in range(3)] == [4, 3, 2]
        assert sign_in(s, db.keys).accepted                       # the count starts again
        assert [sign_in(s, db.keys, "0000").tries_left for _ in range(4)] == [4, 3, 2, 1]
        fifth = sign_in(s, db.keys, "0000")
        assert (fifth.accepted, fifth.reason, fifth.tries_left) == (False, "locked", 0)
        s.commit()
        row = s.get(Attendant, "A1")
        assert row is not None and (row.status, row.failed_tries) == ("locked", 5)
        # locked: the right PIN is refused as well, and no try is counted
        assert sign_in(s, db.keys) == att.SignIn(False, "locked", "A1")
        s.commit()
        assert row.failed_tries == 5
        lockouts = [e for e in audits(s) if e.action == "attendant.lockout"]
        assert len(lockouts) == 1 and lockouts[0].actor == "attendant:A1"
        att.unlock(s, "A1", actor="op", reason="called the office", now=NOW)
        assert sign_in(s, db.keys).accepted and row.failed_tries == 0
        text = " ".join(e.detail for e in audits(s))
        assert "0000" not in text and PIN not in text and number(1) not in text


def test_the_tries_setting_is_read(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        s.add(LoyaltySetting(key="attendant_tries", value="2"))
        assert sign_in(s, db.keys, "0000").tries_left == 1
        assert sign_in(s, db.keys, "0000").reason == "locked"
        s.merge(LoyaltySetting(key="attendant_tries", value="many"))
        with pytest.raises(ConfigError, match="attendant_tries"):
            att.tries_allowed(s)


def test_refusals_say_little_and_are_audited(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1", stations="ST-002")
        make(s, db.keys, "A2", serial=2, pin=None)
        make(s, db.keys, "A3", serial=3)
        att.withdraw(s, "A3", actor="op", reason="left", now=NOW)
        assert sign_in(s, db.keys, serial=9) == att.SignIn(False, "unknown")
        assert sign_in(s, db.keys, terminal="T-0002").reason == "terminal"      # T-0002 is at ST-002
        assert sign_in(s, db.keys, terminal="T-9999").reason == "terminal"
        assert sign_in(s, db.keys, serial=2).reason == "locked"                  # no PIN yet
        assert sign_in(s, db.keys, serial=3).reason == "locked"                  # withdrawn: as locked
        assert sign_in(s, db.keys, "0000").reason == "wrong_pin"                 # the PIN before the station
        assert sign_in(s, db.keys) == att.SignIn(False, "station", "A1")
        assert sign_in(s, db.keys, terminal="T-0002", station="ST-002").accepted
        s.commit()
        refused = [(e.actor, e.reason) for e in audits(s)
                   if e.action == "attendant.signin_refused"]
        assert refused == [("terminal:T-0001", "unknown"), ("terminal:T-0002", "terminal"),
                           ("terminal:T-9999", "terminal"), ("attendant:A2", "locked"),
                           ("attendant:A3", "locked"), ("attendant:A1", "wrong_pin"),
                           ("attendant:A1", "station")]


def test_wrong_pins_at_once_from_several_terminals_each_count(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        s.add(LoyaltySetting(key="attendant_tries", value="6"))
        s.commit()
    results: list[att.SignIn] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        with db.sessions() as s:
            start.wait()
            results.append(sign_in(s, db.keys, "0000"))
            s.commit()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.sessions() as s:
        row = s.get(Attendant, "A1")
        assert row is not None and (row.status, row.failed_tries) == ("locked", 6)
        assert sorted(r.reason for r in results) == ["locked"] * 3 + ["wrong_pin"] * 5
        assert len([e for e in audits(s) if e.action == "attendant.lockout"]) == 1


# -- the audit of attendant actions ---------------------------------------------------------------------

def test_audit_action(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1")
        att.audit_action(s, "A1", "cash_prepay", "pump:3", {"amount_cents": 5000, "terminal": "T-0001"}, NOW)
        s.commit()
        last = audits(s)[-1]
        assert (last.actor, last.action, last.subject, last.at) == ("attendant:A1", "attendant.cash_prepay",
                                                                    "pump:3", NOW)
        assert json.loads(last.detail) == {"amount_cents": 5000, "terminal": "T-0001"}
        for action, subject, detail, key in (
                ("dance", "pump:3", {}, "action"), ("reprint", "", {}, "subject"),
                ("redeem", "card", {"pin": "1"}, "pin"),
                ("topup", "wallet:1", {"note": "card 9001000000000010 paid"}, "note")):
            with pytest.raises(ConfigError) as err:
                att.audit_action(s, "A1", action, subject, detail, NOW)
            assert err.value.context["key"] == key
        with pytest.raises(ConfigError, match="unknown attendant"):
            att.audit_action(s, "B7", "reprint", "sale:1", {}, NOW)


# -- the signed configuration ---------------------------------------------------------------------------

def device_stop_key(s: Session, keys: RegistryKeys, device_id: str) -> bytes:
    device = s.get(Device, device_id)
    assert device is not None
    return derive_stop_key(keys.device_key(device.pin_key_hex))


def test_config_carries_the_station_attendants_by_each_devices_entry(db: Db) -> None:
    with db.sessions() as s:
        make(s, db.keys, "A1", role="supervisor")
        make(s, db.keys, "A2", serial=2, stations="ST-002")
        make(s, db.keys, "A3", serial=3, pin=None)
        make(s, db.keys, "A4", serial=4)
        make(s, db.keys, "A5", serial=5)
        att.lock(s, "A4", actor="op", reason="x", now=NOW)
        att.withdraw(s, "A5", actor="op", reason="x", now=NOW)
        s.commit()
        one, two = (s.get(Device, i) for i in ("T-0001", "T-0002"))
        assert one is not None and two is not None
        body1, body2 = build_body(s, one, db.keys, NOW), build_body(s, two, db.keys, NOW)
        check_body(body1)
        assert [(a["id"], a["role"]) for a in body1["attendants"]] == [("A1", "supervisor")]
        assert [a["id"] for a in body2["attendants"]] == ["A1", "A2"]
        entry = body1["attendants"][0]
        assert entry["card"] == att.card_entry(device_stop_key(s, db.keys, "T-0001"), number(1))
        assert entry["card"] != stop_entry(device_stop_key(s, db.keys, "T-0001"), number(1))
        assert entry["card"] != body2["attendants"][0]["card"]              # each terminal its own
        assert pin_matches(entry["pin_verifier"], PIN) and "|" not in entry["pin_verifier"]
        assert number(1) not in json.dumps(body1) and build_body(s, one)["attendants"] == []


def test_config_is_reissued_when_the_attendants_change(db: Db, tmp_path: Path) -> None:
    issuer = ConfigIssuer(tmp_path / "state", keys=db.keys)
    with db.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        versions = [issuer.issue_config(s, device, NOW)["version"]]
        make(s, db.keys, "A1")
        signature = att.signature(s)
        versions.append(issuer.issue_config(s, device, NOW)["version"])
        sign_in(s, db.keys, "0000")                                         # a wrong try: no new version
        assert att.signature(s) == signature
        versions.append(issuer.issue_config(s, device, NOW)["version"])
        att.lock(s, "A1", actor="op", reason="x", now=NOW)
        assert att.signature(s) != signature
        versions.append(issuer.issue_config(s, device, NOW)["version"])
        att.unlock(s, "A1", actor="op", reason="x", now=NOW)
        att.set_pin(s, "A1", "2468", actor="op", now=NOW, iterations=FAST)
        doc = issuer.issue_config(s, device, NOW)
        s.commit()
    assert versions == [1, 2, 2, 3] and doc["version"] == 4
    assert pin_matches(doc["body"]["attendants"][0]["pin_verifier"], "2468")


def test_a_full_configuration_fits_a_message(db: Db, tmp_path: Path) -> None:
    with db.sessions() as s:
        for i in range(att.MOST + 1):
            ident = f"A{i:015d}"
            att.add(s, ident, "é" * 100, role="supervisor" if i == att.MOST else "attendant", actor="op",
                    now=NOW)
            att.set_card(s, db.keys, ident, number(i), actor="op", now=NOW)
            att.set_pin(s, ident, PIN, actor="op", now=NOW, iterations=PIN_ITERATIONS if i == 0 else FAST)
        device = s.get(Device, "T-0001")
        assert device is not None
        doc = ConfigIssuer(tmp_path / "state", keys=db.keys).issue_config(s, device, NOW)
    listed = [a["id"] for a in doc["body"]["attendants"]]
    assert len(listed) == att.MOST and f"A{att.MOST:015d}" in listed and f"A{att.MOST - 1:015d}" not in listed
    doc["body"]["stop_list"] = [f"{i:032x}" for i in range(500)]       # the longest stop-list besides
    assert len(m.encode(doc, d.SIGNED_CONFIG)) < 64 * 1024 - 4096
