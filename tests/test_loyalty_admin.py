"""Loyalty administration (registry.loyalty.admin, settings) on a real SQLite registry, and `forecourt
registry loyalty ...` run as the operator runs it: a subprocess, card numbers only on standard input."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import cards as fleet_cards
from registry.keys import RegistryKeys, load_or_create_keys
from registry.loyalty import admin, settings
from registry.models import (
    Account,
    AuditEntry,
    Customer,
    LoyaltyLink,
    LoyaltyMember,
    LoyaltySetting,
    Product,
    Tier,
    Wallet,
)
from tests.test_fleet_cli import Registry, one_line
from tests.test_loyalty_earn import LOYAL, LOYAL2, luhn

NOW = dt.datetime(2026, 12, 2, 10, 0)
OPS = {"actor": "ops", "now": NOW}
FLEET = "7077001000000019"
LOYAL3, LOYAL4 = luhn("707700900000003"), luhn("707700900000004")
Env = tuple[Session, RegistryKeys]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Session, RegistryKeys]]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "registry-keys.json")
    with sessions() as s:
        s.add(Product(code="diesel", name="Diesel", code3="019"))
        s.commit()
        yield s, keys
    engine.dispose()


def audits(s: Session, action: str) -> list[AuditEntry]:
    return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_an_account_has_its_member_row_and_points_wallet_and_is_audited(env: Env) -> None:
    s, _ = env
    a = admin.create_account(s, "Jo Driver", issued_on=NOW.date(), timezone="Europe/Berlin", **OPS)
    member = s.get(LoyaltyMember, a.id)
    [wallet] = s.scalars(select(Wallet).where(Wallet.account_id == a.id))
    got = (a.kind, member.tier if member else None, wallet.unit, wallet.balance)
    assert got == ("loyalty", "base", "points", 0)
    assert audits(s, "loyalty.account.create")[0].subject == f"account:{a.id}"
    with pytest.raises(ConfigError):
        admin.create_account(s, "X", issued_on=NOW.date(), timezone="Mars/Olympus", **OPS)
    with pytest.raises(ConfigError):
        admin.create_account(s, "", issued_on=NOW.date(), **OPS)


def test_group_cards_at_most_the_setting_and_a_final_card_frees_its_place(env: Env) -> None:
    s, keys = env
    a = admin.create_account(s, "Family", issued_on=NOW.date(), **OPS)
    issued = [admin.add_card(s, keys, a.id, n, medium="chip", expiry="2912", **OPS)
              for n in (LOYAL, LOYAL2, LOYAL3)]
    assert [c.status for c in issued] == ["active"] * 3
    with pytest.raises(ConfigError, match="at most 3 cards"):
        admin.add_card(s, keys, a.id, LOYAL4, medium="chip", expiry="2912", **OPS)
    fleet_cards.move(s, issued[0].id, "lost", actor="ops", reason="lost at the pump", now=NOW)
    admin.add_card(s, keys, a.id, LOYAL4, medium="chip", expiry="2912", **OPS)
    admin.set_setting(s, "group_cards", 2, **OPS)
    b = admin.create_account(s, "Other", issued_on=NOW.date(), **OPS)
    admin.add_card(s, keys, b.id, "U04A1B2C3D4E5F6", medium="tag", expiry="2912", **OPS)
    with pytest.raises(ConfigError):                        # a card number is on one account only
        admin.add_card(s, keys, b.id, LOYAL2, medium="chip", expiry="2912", **OPS)


def test_links_keep_the_token_and_masked_number_only_on_one_account(env: Env) -> None:
    s, keys = env
    a = admin.create_account(s, "A", issued_on=NOW.date(), **OPS)
    b = admin.create_account(s, "B", issued_on=NOW.date(), **OPS)
    admin.add_card(s, keys, a.id, LOYAL, medium="chip", expiry="2912", **OPS)
    link = admin.link_card(s, keys, a.id, FLEET, **OPS)
    assert (link.token, link.masked) == (keys.token(FLEET), "707700******0019")
    with pytest.raises(ConfigError, match="linked"):
        admin.link_card(s, keys, b.id, FLEET, **OPS)
    with pytest.raises(ConfigError, match="linked"):
        admin.add_card(s, keys, b.id, FLEET, medium="chip", expiry="2912", **OPS)
    with pytest.raises(ConfigError, match="own account"):
        admin.link_card(s, keys, b.id, LOYAL, **OPS)
    with pytest.raises(ConfigError):
        admin.unlink_card(s, keys, b.id, FLEET, actor="ops", reason="wrong", now=NOW)
    admin.unlink_card(s, keys, a.id, FLEET, actor="ops", reason="customer asked", now=NOW)
    assert s.get(LoyaltyLink, keys.token(FLEET)) is None
    admin.link_card(s, keys, b.id, FLEET, **OPS)
    text = json.dumps([(e.subject, e.reason, e.detail) for e in s.scalars(select(AuditEntry))])
    assert FLEET not in text and LOYAL not in text and "707700******0019" in text


def test_only_loyalty_accounts_and_pools_one_level(env: Env) -> None:
    s, keys = env
    s.add(Customer(id=1, name="ACME", kind="company", created_at=NOW))
    s.flush()
    s.add(Account(id=50, name="fleet", customer_id=1, kind="fleet", timezone="UTC"))
    s.flush()
    with pytest.raises(ConfigError, match="not a loyalty account"):
        admin.link_card(s, keys, 50, FLEET, **OPS)
    owner = admin.create_account(s, "Owner", issued_on=NOW.date(), customer_id=1, **OPS)
    one = admin.create_account(s, "Truck 1", issued_on=NOW.date(), customer_id=1, **OPS)
    two = admin.create_account(s, "Truck 2", issued_on=NOW.date(), customer_id=1, **OPS)
    admin.set_pool(s, one.id, owner.id, **OPS)
    with pytest.raises(ConfigError):
        admin.set_pool(s, two.id, one.id, **OPS)            # into a pooled account
    with pytest.raises(ConfigError):
        admin.set_pool(s, owner.id, two.id, **OPS)          # a pool pooled itself
    with pytest.raises(ConfigError):
        admin.set_pool(s, two.id, two.id, **OPS)
    admin.set_pool(s, one.id, None, **OPS)
    assert s.get(LoyaltyMember, one.id).pool_account_id is None    # type: ignore[union-attr]
    assert len(audits(s, "loyalty.pool")) == 2


def test_rules_and_promotions_validated_and_ended(env: Env) -> None:
    s, _ = env
    rule = admin.add_rule(s, "diesel", "volume", 1500, **OPS)
    admin.add_rule(s, "group:shop", "money", 1000, **OPS)
    for bad in (("petrol", "volume", 1), ("group:Shop Items", "volume", 1), ("*", "weight", 1),
                ("*", "volume", -1)):
        with pytest.raises(ConfigError):
            admin.add_rule(s, *bad, **OPS)
    with pytest.raises(ConfigError):
        admin.end_rule(s, 99, on=NOW.date(), **OPS)
    assert admin.end_rule(s, rule.id, on=NOW.date(), **OPS).ends_on == NOW.date()
    day = NOW.date()
    promo = admin.add_promotion(s, "Double", position=1, product="diesel", stations="ST-1, group:north",
                                starts_on=day, ends_on=day + dt.timedelta(days=30), multiplier_pct=200, **OPS)
    assert promo.stations == "ST-1,group:north"
    for bad_kw in ({"stations": "ST 1"}, {"product": "petrol"}, {"multiplier_pct": -1}, {"name": "a|b"},
                   {"ends_on": day - dt.timedelta(days=1)}, {"position": -1}):
        kw = {"position": 2, "starts_on": day, "ends_on": day, **bad_kw}
        with pytest.raises(ConfigError):
            admin.add_promotion(s, str(kw.pop("name", "P")), **kw, **OPS)   # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        admin.end_promotion(s, promo.id, on=day - dt.timedelta(days=1), **OPS)
    ended = admin.end_promotion(s, promo.id, on=day + dt.timedelta(days=3), **OPS)
    assert (ended.ends_on, ended.status) == (day + dt.timedelta(days=3), "ended")
    assert len(audits(s, "loyalty.promo.end")) == 1


def test_tiers_by_rank_with_rising_spend(env: Env) -> None:
    s, _ = env
    admin.set_tier(s, "base", rank=0, multiplier_pct=100, min_spend_cents=0, **OPS)
    admin.set_tier(s, "silver", rank=1, multiplier_pct=125, min_spend_cents=50_000, **OPS)
    admin.set_tier(s, "gold", rank=2, multiplier_pct=150, min_spend_cents=150_000, **OPS)
    for name, rank, spend in (("platinum", 2, 300_000), ("platinum", 3, 100_000), ("Platinum", 3, 300_000),
                              ("zero", 0, 0), ("free", 4, 0)):
        with pytest.raises(ConfigError):
            admin.set_tier(s, name, rank=rank, multiplier_pct=200, min_spend_cents=spend, **OPS)
    admin.set_tier(s, "gold", rank=2, multiplier_pct=160, min_spend_cents=150_000, **OPS)     # a change
    assert [(t.name, t.multiplier_pct) for t in s.scalars(select(Tier).order_by(Tier.rank))] == [
        ("base", 100), ("silver", 125), ("gold", 160)]


def test_settings_defaults_validation_and_stored_values(env: Env) -> None:
    s, _ = env
    assert settings.load(s) == settings.Settings()
    assert settings.load(s).expiry_months == 24 and settings.load(s).group_cards == 3
    assert admin.set_setting(s, "expiry_months", "36", **OPS) == 36
    assert settings.load(s).expiry_months == 36
    for key, value in (("expiry", 1), ("expiry_months", 0), ("expiry_months", "x"), ("daily_cap_points", -5),
                       ("first_use_pct", True)):
        with pytest.raises(ConfigError):
            admin.set_setting(s, key, value, **OPS)          # type: ignore[arg-type]
    [entry] = audits(s, "loyalty.setting")
    assert json.loads(entry.detail) == {"old": 24, "new": 36}
    s.execute(update(LoyaltySetting).values(value="0"))      # a row written by hand, out of range
    with pytest.raises(ConfigError):
        settings.load(s)


# -- the command line --------------------------------------------------------------------------------------

@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


def test_operator_runs_the_programme_from_the_command_line(reg: Registry) -> None:
    assert reg.ok("loyalty", "account", "add", "--name", "Jo", "--issued-on", "2026-12-01") == (
        "loyalty account 1: Jo, time zone UTC\n")
    out = reg.ok("loyalty", "account", "card", "1", "--number", "-", "--expiry", "2912", stdin=LOYAL + "\n",
                 keys=True)
    assert out.startswith("loyalty card 1: 707700******") and LOYAL not in out
    reg.ok("loyalty", "account", "link", "1", "--number", "-", stdin=FLEET + "\n", keys=True)
    shown = reg.ok("loyalty", "account", "show", "1")
    assert "tier base, 0 points" in shown and "707700******0019" in shown and FLEET not in shown
    assert reg.ok("loyalty", "rule", "add", "--product", "*", "--basis", "volume", "--points", "1.5") == (
        "earn rule 1: *, 1.5 points per litre\n")
    reg.ok("loyalty", "promo", "add", "--name", "Premium x2", "--position", "1", "--from", "2026-12-01",
           "--to", "2026-12-31", "--multiplier", "200", "--stop")
    assert "last day 2026-12-20" in reg.ok("loyalty", "promo", "end", "1", "--on", "2026-12-20")
    assert "Premium x2" in reg.ok("loyalty", "promo", "list") and "1.5" in reg.ok("loyalty", "rule", "list")
    reg.ok("loyalty", "tier", "set", "base", "--rank", "0", "--multiplier", "100", "--min-spend", "0")
    reg.ok("loyalty", "tier", "set", "gold", "--rank", "1", "--multiplier", "150", "--min-spend", "1500")
    assert "gold  1     150%        1500.00" in reg.ok("loyalty", "tier", "list")
    assert reg.ok("loyalty", "setting", "set", "daily_cap_points", "2500") == "daily_cap_points = 2500\n"
    assert "daily_cap_points    2500   5000" in reg.ok("loyalty", "setting", "list")
    assert "1 accounts, 0 points expired" in reg.ok("loyalty", "close", "--month", "2026-11")
    actions = [a for (a,) in reg.rows("SELECT actor FROM audit WHERE action LIKE 'loyalty.%'")]
    assert set(actions) == {"operator1"} and len(actions) >= 9


def test_command_line_refusals_are_one_line(reg: Registry) -> None:
    assert "unknown loyalty setting" in one_line(reg.run("loyalty", "setting", "set", "bonus", "1"), 2)
    one_line(reg.run("loyalty", "account", "show", "7"), 2)
    out = reg.run("loyalty", "account", "link", "1", "--number", FLEET, keys=True)   # never in argv
    assert out.returncode == 2 and FLEET not in out.stderr
    reg.ok("loyalty", "account", "add", "--name", "Jo")
    assert "--reason" in one_line(reg.run("loyalty", "account", "link", "1", "--number", "-", "--remove",
                                          stdin=FLEET + "\n", keys=True), 2)
