"""registry.fleet.admin and registry.fleet.cards on a real SQLite registry: validation, audit, the money
operations on the ledger, the card life cycle, reissue, the expiry sweep and the stop-list numbers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pg_env
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.cards import luhn_ok
from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import admin, cards, closing, groups, ledger
from registry.fleet.admin import FleetError
from registry.fleet.ledger import LedgerError
from registry.fleet.statements import account_summary
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import (
    AuditEntry,
    Authorization,
    Card,
    Device,
    Hold,
    Limit,
    Movement,
    Product,
    Station,
    StationGroupMember,
    TimeWindow,
    Usage,
    Wallet,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
PAN = "7077001000000019"
PAN2 = "7077001000000027"
PAN3 = "7077001000000035"
OPS = {"actor": "alice", "now": NOW}

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@dataclass
class Fleet:
    s: Session
    keys: RegistryKeys
    customer: int
    account: int
    vehicle: int
    driver: int


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    with sessions() as s:
        s.add_all([Station(id="ST-001", name="North"), Station(id="ST-002", name="South"),
                   Product(code="diesel", name="Diesel", code3="019"),
                   Product(code="petrol95", name="Petrol 95", code3="001")])
        s.flush()
        s.add(StationGroupMember(group="north", station_id="ST-001"))
        customer = admin.create_customer(s, "Hauler GmbH", kind="company", tax_id="DE123456789", **OPS)
        account = admin.create_account(s, customer.id, "Trucks", prompts="vehicle,odometer",
                                       timezone="Europe/Berlin", **OPS)
        vehicle = admin.add_vehicle(s, account.id, "ab-12", **OPS)
        driver = admin.add_driver(s, account.id, "0042", name="Dana", **OPS)
        s.commit()
        yield Fleet(s, keys, customer.id, account.id, vehicle.id, driver.id)
    engine.dispose()


def audits(s: Session, action: str) -> list[AuditEntry]:
    return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_number_sealed_under_the_kek_opens_only_there(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "a" / "registry-keys.json")
    other = load_or_create_keys(tmp_path / "b" / "registry-keys.json")
    sealed = keys.seal_number(PAN)
    assert PAN not in sealed and sealed != keys.seal_number(PAN)          # a fresh nonce each time
    assert keys.open_number(sealed) == PAN
    for bad in (sealed[:-4] + "AAAA", "num1:!!", PAN, sealed.replace("num1:", "kek1:")):
        with pytest.raises(ConfigError) as err:
            keys.open_number(bad)
        assert PAN not in str(err.value)
    with pytest.raises(ConfigError, match="does not open"):
        other.open_number(sealed)
    with pytest.raises(ConfigError, match="no key-encryption key"):
        RegistryKeys(keys.card_key, keys.pin_key).seal_number(PAN)


def test_account_input_is_checked(fleet: Fleet) -> None:
    s = fleet.s
    with pytest.raises(ConfigError, match="kind"):
        admin.create_customer(s, "X", kind="alien", **OPS)
    for tz in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(ConfigError, match="IANA"):
            admin.create_account(s, fleet.customer, "X", timezone=tz, **OPS)
    for prompts in ("odometer,colour", "vehicle,vehicle"):
        with pytest.raises(ConfigError, match="prompts"):
            admin.create_account(s, fleet.customer, "X", prompts=prompts, **OPS)
    with pytest.raises(ConfigError, match="unknown customer"):
        admin.create_account(s, 999, "X", **OPS)
    with pytest.raises(ConfigError, match="already"):
        admin.add_vehicle(s, fleet.account, "AB 12", **OPS)
    with pytest.raises(ConfigError, match="digits"):
        admin.add_driver(s, fleet.account, "42A", **OPS)
    with pytest.raises(ConfigError, match="name"):
        admin.create_customer(s, "bad\nname", **OPS)
    account = admin.create_account(s, fleet.customer, "Vans", prompts=" driver_id , odometer", **OPS)
    assert account.prompts == "odometer,driver_id" and account.timezone == "UTC"
    entry = audits(s, "account.create")[-1]
    assert (entry.actor, entry.subject, entry.at) == ("alice", f"account:{account.id}", NOW)


def test_wallet_specs_units_and_modes_are_checked(fleet: Fleet) -> None:
    s, acc = fleet.s, fleet.account
    bad = [({"unit": "gallons"}, "unit"), ({"unit": "money", "mode": "lease"}, "mode"),
           ({"unit": "money", "credit_limit": 500}, "credit limit"),
           ({"unit": "money", "mode": "postpaid", "credit_limit": -1}, "credit limit"),
           ({"unit": "volume", "products": "19"}, "3 digits"), ({"unit": "volume", "products": "099-001"},
                                                                 "backwards"),
           ({"unit": "volume", "products": "kerosene"}, "known product"),
           ({"unit": "volume", "stations": "ST-999"}, "stations"),
           ({"unit": "volume", "stations": "group:south"}, "stations")]
    for kwargs, match in bad:
        with pytest.raises(ConfigError, match=match):
            admin.add_wallet(s, acc, **kwargs, **OPS)            # type: ignore[arg-type]
    litres = admin.add_wallet(s, acc, unit="volume", products=" 001-099 , diesel",
                              stations="group:north,ST-002", name="Diesel", **OPS)
    cash = admin.add_wallet(s, acc, unit="money", mode="postpaid", credit_limit=50_000, **OPS)
    assert (litres.allowed_products, litres.stations, litres.priority, cash.priority) == \
        ("001-099,diesel", "group:north,ST-002", 0, 1)
    order = admin.set_wallet_order(s, acc, [cash.id], **OPS)
    assert [w.id for w in order] == [cash.id, litres.id] and (cash.priority, litres.priority) == (0, 1)
    with pytest.raises(ConfigError, match="each once"):
        admin.set_wallet_order(s, acc, [cash.id, cash.id], **OPS)
    with pytest.raises(ConfigError, match="each once"):
        admin.set_wallet_order(s, acc, [cash.id, 999], **OPS)


def test_station_groups(fleet: Fleet) -> None:
    s = fleet.s
    with pytest.raises(ConfigError, match="stations"):
        admin.add_wallet(s, fleet.account, unit="money", stations="group:south", **OPS)
    assert groups.add_station(s, "south", "ST-002", **OPS)
    assert not groups.add_station(s, "south", "ST-002", **OPS)
    for name, station, match in (("a,b", "ST-001", "group name"), ("south:x", "ST-001", "group name"),
                                 ("south", "ST-404", "unknown station")):
        with pytest.raises(ConfigError, match=match):
            groups.add_station(s, name, station, **OPS)
    wallet = admin.add_wallet(s, fleet.account, unit="money", stations="group:south", **OPS)
    assert wallet.stations == "group:south"
    assert groups.groups(s) == {"north": ["ST-001"], "south": ["ST-002"]}
    assert groups.remove_station(s, "south", "ST-002", **OPS)
    assert not groups.remove_station(s, "south", "ST-002", **OPS)
    assert [e.subject for e in audits(s, "group.add") + audits(s, "group.remove")] == ["group:south"] * 2


def test_limits_and_windows(fleet: Fleet) -> None:
    s = fleet.s
    card = cards.issue_card(s, fleet.keys, fleet.account, PAN, medium="chip", expiry="2812", pin="1234",
                            **OPS)
    bad = [(("account", fleet.account, "fortnight", "money", 1), "period"),
           (("account", fleet.account, "day", "litres", 1), "unit"),
           (("account", fleet.account, "day", "money", -1), "maximum"),
           (("account", fleet.account, "sale", "count", 3), "count"),
           (("card", 999, "day", "money", 1), "unknown card"), (("wallet", 1, "day", "money", 1), "scope")]
    for args, match in bad:
        with pytest.raises(ConfigError, match=match):
            admin.set_limit(s, *args, **OPS)                     # type: ignore[arg-type]
    admin.set_limit(s, "card", card.id, "day", "volume", 100_00, **OPS)
    admin.set_limit(s, "card", card.id, "day", "volume", 80_00, **OPS)          # replaces it
    rows = s.scalars(select(Limit).where(Limit.scope == "card")).all()
    assert [(r.period, r.unit, r.maximum) for r in rows] == [("day", "volume", 80_00)]
    assert json.loads(audits(s, "limit.set")[-1].detail)["before"] == 100_00
    assert admin.clear_limit(s, "card", card.id, "day", "volume", **OPS)
    assert not admin.clear_limit(s, "card", card.id, "day", "volume", **OPS)
    for weekdays, start, end in ((0, 360, 1320), (128, 360, 1320), (31, 360, 360), (31, -1, 60),
                                 (31, 0, 1441)):
        with pytest.raises(ConfigError):
            admin.add_window(s, "account", fleet.account, weekdays, start, end, **OPS)
    admin.add_window(s, "account", fleet.account, 0b0011111, 360, 1320, **OPS)
    admin.add_window(s, "account", fleet.account, 0b1100000, 1320, 360, **OPS)    # over midnight
    assert admin.clear_windows(s, "account", fleet.account, **OPS) == 2
    assert s.scalar(select(func.count()).select_from(TimeWindow)) == 0


def test_topup_needs_a_reason_and_is_idempotent_by_key(fleet: Fleet) -> None:
    s = fleet.s
    wallet = admin.add_wallet(s, fleet.account, unit="money", **OPS)
    for reason in ("", "   ", "two\nlines"):
        with pytest.raises(ConfigError, match="reason"):
            admin.topup(s, wallet.id, 100, actor="alice", reason=reason, now=NOW)
    for amount in (0, -5):
        with pytest.raises(ConfigError, match="amount"):
            admin.topup(s, wallet.id, amount, actor="alice", reason="bank", now=NOW)
    first = admin.topup(s, wallet.id, 10_000, actor="alice", reason="bank transfer", now=NOW, key="TX-1")
    again = admin.topup(s, wallet.id, 10_000, actor="alice", reason="bank transfer", now=NOW, key="TX-1")
    assert first.id == again.id and wallet.balance == 10_000
    with pytest.raises(LedgerError):
        admin.topup(s, wallet.id, 9_000, actor="alice", reason="bank transfer", now=NOW, key="TX-1")
    admin.topup(s, wallet.id, 500, actor="bob", reason="cash at desk", now=NOW)
    s.commit()
    assert wallet.balance == 10_500 and ledger.check(s) == []
    entries = audits(s, "wallet.topup")
    assert [(e.actor, e.reason) for e in entries] == [("alice", "bank transfer"), ("bob", "cash at desk")]
    with pytest.raises(ConfigError, match="unknown wallet"):
        admin.topup(s, 999, 1, actor="alice", reason="x", now=NOW)


def test_corrections_and_transfers_on_the_ledger(fleet: Fleet) -> None:
    s = fleet.s
    cash = admin.add_wallet(s, fleet.account, unit="money", **OPS)
    spare = admin.add_wallet(s, fleet.account, unit="money", **OPS)
    litres = admin.add_wallet(s, fleet.account, unit="volume", **OPS)
    admin.topup(s, cash.id, 5_000, actor="alice", reason="opening", now=NOW)
    move = admin.correct(s, cash.id, -1_200, actor="alice", reason="double top-up", now=NOW)
    assert (move.kind, move.amount, move.balance_after, move.reason) == ("correction", -1_200, 3_800,
                                                                         "double top-up")
    with pytest.raises(LedgerError):
        admin.correct(s, cash.id, -3_801, actor="alice", reason="too much", now=NOW)
    with pytest.raises(ConfigError, match="non-zero"):
        admin.correct(s, cash.id, 0, actor="alice", reason="nothing", now=NOW)
    out, into = admin.transfer(s, cash.id, spare.id, 800, actor="alice", reason="split", now=NOW)
    assert (out.amount, into.amount, cash.balance, spare.balance) == (-800, 800, 3_000, 800)
    assert out.key.endswith(":out") and into.key == out.key[:-4] + ":in"
    with pytest.raises(LedgerError):
        admin.transfer(s, cash.id, litres.id, 100, actor="alice", reason="units", now=NOW)
    with pytest.raises(LedgerError):
        admin.transfer(s, spare.id, cash.id, 801, actor="alice", reason="too much", now=NOW)
    with pytest.raises(ConfigError, match="two different"):
        admin.transfer(s, cash.id, cash.id, 1, actor="alice", reason="self", now=NOW)
    s.commit()
    assert ledger.check(s) == []
    assert json.loads(audits(s, "wallet.transfer")[0].detail)["target"] == spare.id
    assert s.scalar(select(func.count()).select_from(Movement)) == 4


def test_wallets_close_empty_and_a_closed_account_withdraws_its_cards(fleet: Fleet) -> None:
    s = fleet.s
    cash = admin.add_wallet(s, fleet.account, unit="money", **OPS)
    spare = admin.add_wallet(s, fleet.account, unit="money", **OPS)
    admin.topup(s, cash.id, 500, actor="alice", reason="opening", now=NOW)
    with pytest.raises(FleetError, match="closes empty"):
        closing.close_wallet(s, cash.id, actor="alice", reason="contract ended", now=NOW)
    with pytest.raises(ConfigError, match="reason"):
        closing.close_wallet(s, spare.id, actor="alice", reason="", now=NOW)
    closing.close_wallet(s, spare.id, actor="alice", reason="not needed", now=NOW)
    with pytest.raises(LedgerError):
        admin.topup(s, spare.id, 1, actor="alice", reason="late", now=NOW)
    with pytest.raises(FleetError, match="already"):
        closing.close_wallet(s, spare.id, actor="alice", reason="again", now=NOW)
    active = cards.issue_card(s, fleet.keys, fleet.account, PAN, medium="chip", expiry="2812", pin=None,
                              activate=True, **OPS)
    lost = cards.issue_card(s, fleet.keys, fleet.account, PAN2, medium="chip", expiry="2812", pin=None, **OPS)
    cards.move(s, lost.id, "lost", actor="alice", reason="gone", now=NOW)
    with pytest.raises(FleetError, match="closes empty"):
        closing.close_account(s, fleet.account, actor="alice", reason="customer left", now=NOW)
    admin.transfer(s, cash.id, admin.add_wallet(s, admin.create_account(s, fleet.customer, "B", **OPS).id,
                                                 unit="money", **OPS).id, 500, actor="alice", reason="move",
                   now=NOW)
    assert closing.close_account(s, fleet.account, actor="alice", reason="customer left", now=NOW) == 1
    assert [s.get(Card, c.id).status for c in (active, lost)] == ["withdrawn", "lost"]   # type: ignore[union-attr]
    assert cash.status == "closed" and PAN in cards.stop_list_numbers(s, fleet.keys, NOW)
    for closed_account in (lambda: admin.add_wallet(s, fleet.account, unit="money", **OPS),
                           lambda: cards.issue_card(s, fleet.keys, fleet.account, PAN3, medium="chip",
                                                    expiry="2812", pin=None, **OPS)):
        with pytest.raises(FleetError, match="closed"):
            closed_account()
    assert ledger.check(s) == []


def test_account_summary_shows_available_used_and_remaining(fleet: Fleet) -> None:
    s = fleet.s
    wallet = admin.add_wallet(s, fleet.account, unit="volume", **OPS)
    admin.topup(s, wallet.id, 300_00, actor="alice", reason="contract", now=NOW)
    card = cards.issue_card(s, fleet.keys, fleet.account, PAN, medium="chip", expiry="2812", pin=None,
                            activate=True, **OPS)
    admin.set_limit(s, "account", fleet.account, "month", "volume", 1000_00, **OPS)
    admin.set_limit(s, "card", card.id, "day", "volume", 60_00, **OPS)
    admin.set_limit(s, "card", card.id, "sale", "money", 150_00, **OPS)
    s.add(Usage(scope="card", scope_id=card.id, period_key="D2026-12-01", amount_cents=0, volume_cl=25_00,
                count=1))
    s.add(Device(id="T-1", station_id="ST-001", pin_key_hex="x"))
    s.flush()
    s.add(Authorization(id="a1", card_id=card.id, device_id="T-1", pump=1, allowed_cl=20_00, status="open",
                        created_at=NOW, expires_at=NOW + dt.timedelta(minutes=5), account_id=fleet.account))
    s.flush()
    s.add(Hold(auth_id="a1", wallet_id=wallet.id, amount=20_00, expires_at=NOW + dt.timedelta(minutes=5)))
    s.flush()
    summary = admin.account_summary(s, fleet.account, NOW)
    assert [(w.balance, w.available) for w in summary.wallets] == [(300_00, 280_00)]
    got = {(x.scope, x.period, x.unit): (x.maximum, x.used, x.remaining) for x in summary.limits}
    assert got == {("account", "month", "volume"): (1000_00, 20_00, 980_00),
                   ("card", "day", "volume"): (60_00, 45_00, 15_00),
                   ("card", "sale", "money"): (150_00, 0, 150_00)}
    assert summary.cards == [(card.id, "707700******0019", "active")]


def test_issue_card_stores_token_mask_and_sealed_number_only(fleet: Fleet) -> None:
    s = fleet.s
    issued = cards.issue_card(s, fleet.keys, fleet.account, f" {PAN} ", medium="chip", expiry="2812",
                              pin="1234", vehicle_id=fleet.vehicle, driver_id=fleet.driver, **OPS)
    card = s.get(Card, issued.id)
    assert card is not None
    assert (issued.status, card.status, card.masked) == ("new", "new", "707700******0019")
    assert card.token == fleet.keys.token(PAN) and card.number_sealed is not None
    assert fleet.keys.open_number(card.number_sealed) == PAN
    assert card.pin_verifier == fleet.keys.pin_verifier(card.token, "1234")
    stored = " ".join(str(v) for e in s.scalars(select(AuditEntry)) for v in (e.detail, e.reason))
    assert PAN not in stored and "1234" not in stored
    tag = cards.issue_card(s, fleet.keys, fleet.account, "04a1b2c3d4e5f6", medium="tag", expiry="2812",
                           pin=None, activate=True, **OPS)
    tag_card = s.get(Card, tag.id)
    assert tag_card is not None and tag_card.token == fleet.keys.token("U04A1B2C3D4E5F6")
    assert (tag.masked, tag.status, tag_card.pin_verifier, tag_card.medium) == \
        ("U**********E5F6", "active", "", "tag")
    eight = cards.issue_card(s, fleet.keys, fleet.account, "E004010012345678", medium="tag", expiry="2812",
                             pin=None, **OPS)                   # ISO/IEC 15693: 8 bytes
    assert eight.masked == "U************5678"
    bad = [({"number": PAN}, "issued already"), ({"number": "7077001000000018"}, "check digit"),
           ({"number": "70770010"}, "check digit"), ({"number": "04A1B2", "medium": "tag"}, "UID"),
           ({"number": PAN2, "expiry": "2611"}, "expiry"), ({"number": PAN2, "expiry": "2613"}, "expiry"),
           ({"number": PAN2, "pin": "12"}, "PIN"), ({"number": PAN2, "medium": "nfc"}, "medium")]
    for kwargs, match in bad:
        args = {"number": PAN2, "medium": "chip", "expiry": "2812", "pin": None} | kwargs
        with pytest.raises(ConfigError, match=match) as err:
            cards.issue_card(s, fleet.keys, fleet.account, **args, **OPS)   # type: ignore[arg-type]
        assert PAN not in str(err.value) and PAN2 not in str(err.value)
    other = admin.create_account(s, fleet.customer, "Other", **OPS)
    with pytest.raises(ConfigError, match="another account"):
        cards.issue_card(s, fleet.keys, other.id, PAN2, medium="chip", expiry="2812", pin=None,
                         vehicle_id=fleet.vehicle, **OPS)


STATUSES = ("new", "active", "temp_blocked", "blocked", "lost", "stolen", "expired", "replaced", "withdrawn")
ALLOWED = {("new", "activate"), ("active", "temp_block"), ("temp_blocked", "unblock")} | {
    (status, action) for status in ("new", "active", "temp_blocked")
    for action in ("block", "lost", "stolen", "withdraw")}


@pytest.mark.parametrize("status", STATUSES)
def test_card_life_cycle_is_the_transition_table(fleet: Fleet, status: str) -> None:
    s = fleet.s
    card = s.get(Card, cards.issue_card(s, fleet.keys, fleet.account, PAN, medium="chip", expiry="2812",
                                        pin="1234", **OPS).id)
    assert card is not None
    for action in cards.MOVES:
        card.status, card.pin_tries = status, 3
        if (status, action) in ALLOWED:
            cards.move(s, card.id, action, actor="alice", reason="driver called", now=NOW)
            assert card.status == cards.MOVES[action][1] and card.status_changed_at == NOW
            assert card.pin_tries == (0 if card.status == "active" else 3)
        else:
            with pytest.raises(FleetError, match="cannot be moved"):
                cards.move(s, card.id, action, actor="alice", reason="driver called", now=NOW)
            assert card.status == status
    with pytest.raises(ConfigError, match="reason"):
        cards.move(s, card.id, "block", actor="alice", reason="", now=NOW)
    if status in ("new", "temp_blocked"):               # past its month: not made usable again
        card.status = status
        with pytest.raises(FleetError, match="expiry has passed"):
            cards.move(s, card.id, "activate" if status == "new" else "unblock", actor="alice",
                       reason="driver called", now=dt.datetime(2029, 1, 1))
        assert card.status == status


def test_reissue_moves_account_vehicle_driver_limits_windows_and_usage(fleet: Fleet) -> None:
    s = fleet.s
    old = cards.issue_card(s, fleet.keys, fleet.account, PAN, medium="chip", expiry="2812", pin="1234",
                           vehicle_id=fleet.vehicle, driver_id=fleet.driver, activate=True, **OPS)
    admin.set_limit(s, "card", old.id, "day", "volume", 60_00, **OPS)
    admin.add_window(s, "card", old.id, 31, 360, 1320, **OPS)
    s.add(Usage(scope="card", scope_id=old.id, period_key="D2026-12-01", amount_cents=4_000, volume_cl=25_00,
                count=1))
    s.flush()
    with pytest.raises(ConfigError, match="reason"):
        cards.reissue(s, fleet.keys, old.id, PAN2, expiry="2912", pin="9876", actor="alice", reason="",
                      now=NOW)
    new = cards.reissue(s, fleet.keys, old.id, PAN2, expiry="2912", pin="9876", actor="alice",
                        reason="card damaged", now=NOW, activate=True)
    old_card, new_card = s.get(Card, old.id), s.get(Card, new.id)
    assert old_card is not None and new_card is not None
    assert (old_card.status, old_card.replaced_by, new_card.status) == ("replaced", new.id, "active")
    assert (new_card.account_id, new_card.vehicle_id, new_card.driver_id, new_card.expiry) == \
        (fleet.account, fleet.vehicle, fleet.driver, "2912")
    limits = s.scalars(select(Limit).where(Limit.scope_id == new.id))
    assert [(x.period, x.unit, x.maximum) for x in limits] == [("day", "volume", 60_00)]
    assert [(w.weekdays, w.start_minute, w.end_minute)
            for w in s.scalars(select(TimeWindow).where(TimeWindow.scope_id == new.id))] == [(31, 360, 1320)]
    usage = s.get(Usage, ("card", new.id, "D2026-12-01"))
    assert usage is not None and (usage.volume_cl, usage.count) == (25_00, 1)
    with pytest.raises(FleetError, match="cannot be reissued"):
        cards.reissue(s, fleet.keys, old.id, PAN3, expiry="2912", pin=None, actor="alice", reason="again",
                      now=NOW)
    cards.move(s, new.id, "lost", actor="alice", reason="driver lost it", now=NOW)
    third = cards.reissue(s, fleet.keys, new.id, PAN3, expiry="2912", pin=None, actor="alice",
                          reason="replacement for the lost card", now=NOW)
    assert (new_card.status, new_card.replaced_by, third.status) == ("lost", third.id, "new")
    with pytest.raises(FleetError, match="cannot be reissued"):
        cards.reissue(s, fleet.keys, new.id, "7077001000000043", expiry="2912", pin=None, actor="alice",
                      reason="twice", now=NOW)


def _card(fleet: Fleet, number: str, status: str, expiry: str = "2812") -> int:
    card_id = cards.issue_card(fleet.s, fleet.keys, fleet.account, number, medium="chip", expiry="2812",
                               pin=None, **OPS).id
    card = fleet.s.get(Card, card_id)
    assert card is not None
    card.status, card.expiry = status, expiry
    return card_id


def test_expire_cards_sweeps_only_usable_cards_past_their_month(fleet: Fleet) -> None:
    due = _card(fleet, PAN, "active", expiry="2611")
    lost = _card(fleet, PAN2, "lost", expiry="2611")
    fine = _card(fleet, PAN3, "temp_blocked", expiry="2612")
    assert cards.expire_cards(fleet.s, NOW) == 1
    assert [fleet.s.get(Card, i).status for i in (due, lost, fine)] == ["expired", "lost", "temp_blocked"]  # type: ignore[union-attr]
    assert cards.expire_cards(fleet.s, NOW) == 0
    assert cards.expire_cards(fleet.s, dt.datetime(2027, 1, 1)) == 1
    assert len(audits(fleet.s, "card.expire")) == 2


def test_stop_list_numbers_are_the_refused_cards_not_yet_expired(fleet: Fleet) -> None:
    numbers = {status: pan(i) for i, status in enumerate(STATUSES)}
    for status, number in numbers.items():
        _card(fleet, number, status)
    _card(fleet, pan(100), "lost", expiry="2610")               # expired a month ago
    _card(fleet, pan(101), "stolen", expiry="2611")             # its month ended at midnight UTC
    # a new card (not activated yet) is refused offline too
    wanted = {numbers[k] for k in ("lost", "stolen", "blocked", "replaced", "withdrawn", "temp_blocked",
                                   "new")}
    assert set(cards.stop_list_numbers(fleet.s, fleet.keys, dt.datetime(2026, 12, 1, 23, 59))) == \
        wanted | {pan(101)}                                     # a day's grace for terminals west of UTC
    assert sorted(cards.stop_list_numbers(fleet.s, fleet.keys, dt.datetime(2026, 12, 2))) == sorted(wanted)


def pan(n: int) -> str:
    """A 16-digit test card number with a valid check digit."""
    body = f"707700200000{n:03d}"
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def any_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(pg_env.database_url(request, tmp_path))
    yield made
    engine.dispose()


def test_administration_on_sqlite_and_postgresql(any_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Every operation once on both databases (PostgreSQL enforces column lengths and integer sizes)."""
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    with any_sessions() as s:
        s.add_all([Station(id="ST-PG", name="PG"), Product(code="diesel", name="Diesel", code3="019")])
        s.flush()
        s.add(StationGroupMember(group="north", station_id="ST-PG"))
        customer = admin.create_customer(s, "C" * 200, tax_id="T" * 32, **OPS)
        account = admin.create_account(s, customer.id, "A", prompts="odometer,vehicle,driver_id",
                                       timezone="America/Argentina/ComodRivadavia", **OPS)
        vehicle = admin.add_vehicle(s, account.id, "V" * 16, **OPS)
        driver = admin.add_driver(s, account.id, "1" * 16, name="D" * 200, **OPS)
        litres = admin.add_wallet(s, account.id, unit="volume", products="001-099,diesel",
                                  stations="group:north,ST-PG", name="W" * 100,
                                  expires_on=dt.date(2027, 12, 31), **OPS)
        cash = admin.add_wallet(s, account.id, unit="volume", mode="postpaid", credit_limit=admin.MAX_AMOUNT,
                                **OPS)
        for wrong in ({"name": "W" * 101}, {"products": ",".join(["001-099"] * 63)}):
            with pytest.raises(ConfigError):
                admin.add_wallet(s, account.id, unit="money", **wrong, **OPS)     # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="top-up key"):
            admin.topup(s, litres.id, 1, actor="a", reason="r", now=NOW, key="K" * 65)
        admin.topup(s, litres.id, admin.MAX_AMOUNT, actor="a" * 100, reason="R" * 200, now=NOW, key="K" * 64)
        admin.correct(s, litres.id, -1, actor="a", reason="r", now=NOW)
        admin.transfer(s, litres.id, cash.id, 10, actor="a", reason="r", now=NOW)
        admin.set_wallet_order(s, account.id, [cash.id, litres.id], **OPS)
        card = cards.issue_card(s, keys, account.id, "U00112233445566778899", medium="tag", expiry="2812",
                                pin=None, vehicle_id=vehicle.id, driver_id=driver.id, **OPS)
        admin.set_limit(s, "card", card.id, "lifetime", "money", admin.MAX_AMOUNT, **OPS)
        admin.add_window(s, "card", card.id, 127, 0, 1440, **OPS)
        cards.move(s, card.id, "activate", actor="a", reason="r", now=NOW)
        cards.move(s, card.id, "temp_block", actor="a", reason="r", now=NOW)
        new = cards.reissue(s, keys, card.id, "7077001000000019125", expiry="2812", pin="123456789012",
                            medium="chip", actor="a", reason="r", now=NOW)
        s.commit()
        # the old tag, then the new card until it is activated
        assert cards.stop_list_numbers(s, keys, NOW) == ["U00112233445566778899", "7077001000000019125"]
        assert cards.expire_cards(s, dt.datetime(2029, 1, 1)) == 1
        summary = account_summary(s, account.id, NOW)
        assert [w.id for w in summary.wallets] == [cash.id, litres.id]
        assert [(x.scope_id, x.period) for x in summary.limits] == \
            [(card.id, "lifetime"), (new.id, "lifetime")]
        s.commit()
        assert ledger.check(s) == []
        assert s.scalar(select(func.count()).select_from(AuditEntry)) >= 18


OPERATION = st.tuples(st.sampled_from(["topup", "correct", "transfer"]), st.integers(0, 2), st.integers(0, 2),
                      st.integers(-3_000, 3_000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(OPERATION, max_size=12))
def test_any_sequence_of_operator_money_keeps_the_ledger_sound(
        fleet: Fleet, ops: list[tuple[str, int, int, int]]) -> None:
    """Whatever an operator books (refused or not), every balance is its movements, no prepaid wallet goes
    below zero, and each booked change has exactly one audit entry."""
    s = fleet.s
    wallets = [admin.add_wallet(s, fleet.account, unit="money", **OPS).id for _ in range(2)]
    wallets.append(admin.add_wallet(s, fleet.account, unit="money", mode="postpaid", credit_limit=1_000,
                                    **OPS).id)
    s.commit()
    audited = s.scalar(select(func.count()).select_from(AuditEntry))
    booked = 0
    for kind, a, b, amount in ops:
        try:
            if kind == "topup":
                admin.topup(s, wallets[a], amount, actor="op", reason="r", now=NOW)
            elif kind == "correct":
                admin.correct(s, wallets[a], amount, actor="op", reason="r", now=NOW)
            else:
                admin.transfer(s, wallets[a], wallets[b], amount, actor="op", reason="r", now=NOW)
        except (ConfigError, LedgerError):
            s.rollback()
            continue
        s.commit()
        booked += 1
    assert ledger.check(s) == []
    assert s.scalar(select(func.count()).select_from(AuditEntry)) == audited + booked
    balances = [s.get(Wallet, w).balance for w in wallets]                  # type: ignore[union-attr]
    assert min(balances[:2]) >= 0 and balances[2] >= -1_000
    s.rollback()
