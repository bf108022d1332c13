"""registry.prices: price changes scheduled for now or later, refused in the past or twice for one time,
cancelled while pending, applied once when due (every nozzle of the product at the station), audited, and
carried by the next signed configuration."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from registry import network, prices
from registry.configs import build_body
from registry.db import open_database
from registry.models import AuditEntry, Device

NOW = dt.datetime(2026, 12, 1, 12, 0)
LATER = NOW + dt.timedelta(hours=2)


pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture), for the race between two hosts


def _seed(made: sessionmaker[Session]) -> None:
    with made() as s:
        for sid in ("ST-1", "ST-2"):
            network.add_station(s, sid, sid, actor="seed", now=NOW)
        network.add_product(s, "DSL", "Diesel", actor="seed", now=NOW)
        network.add_product(s, "95", "Super 95", actor="seed", now=NOW)
        for pump in (1, 2):
            network.add_nozzle(s, "ST-1", pump, 1, "DSL", 1659, actor="seed", now=NOW)
            network.add_nozzle(s, "ST-1", pump, 2, "95", 1799, actor="seed", now=NOW)
        network.add_nozzle(s, "ST-2", 1, 1, "DSL", 1600, actor="seed", now=NOW)
        s.add(Device(id="T-1", station_id="ST-1", pin_key_hex="00" * 16))
        s.commit()


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    _seed(made)
    yield made
    engine.dispose()


def _prices(s: Session, station: str) -> dict[tuple[int, int], tuple[str, int]]:
    return {(n.pump, n.nozzle): (n.product_code, n.price_milli) for n in network.nozzles(s, station)}


def _actions(s: Session) -> list[tuple[str, str, dict[str, object]]]:
    rows = s.scalars(select(AuditEntry).where(AuditEntry.action.like("price.%")).order_by(AuditEntry.id))
    return [(r.actor, r.action, json.loads(r.detail)) for r in rows]


def test_a_change_waits_for_its_time_then_sets_every_nozzle_of_its_product_there(
        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        change = prices.schedule(s, "ST-1", "DSL", 1599, LATER, actor="web:op", now=NOW)
        s.commit()
        assert prices.status_of(change) == "pending" and change.created_by == "web:op"
        assert prices.apply_due(s, LATER - dt.timedelta(seconds=1)) == []
        assert _prices(s, "ST-1")[1, 1] == ("DSL", 1659)
        applied = prices.apply_due(s, LATER + dt.timedelta(seconds=20))
        s.commit()
        assert [c.id for c in applied] == [change.id]
        assert _prices(s, "ST-1") == {(1, 1): ("DSL", 1599), (1, 2): ("95", 1799),
                                      (2, 1): ("DSL", 1599), (2, 2): ("95", 1799)}
        assert _prices(s, "ST-2") == {(1, 1): ("DSL", 1600)}            # another station keeps its own
        assert prices.status_of(change) == "applied"
        assert change.applied_at == LATER + dt.timedelta(seconds=20)
        assert prices.apply_due(s, LATER + dt.timedelta(hours=1)) == []      # once
        body = build_body(s, s.get(Device, "T-1"), now=LATER)           # type: ignore[arg-type]
        assert {(p["pump"], p["product"], p["price_milli"]) for p in body["prices"]} >= {(1, "DSL", 1599),
                                                                                         (2, "DSL", 1599)}
        actions = _actions(s)
        assert [(a[0], a[1]) for a in actions] == [("web:op", "price.schedule"), ("registry", "price.apply")]
        assert actions[1][2]["before"] == [1659] and actions[1][2]["scheduled_by"] == "web:op"


def test_the_past_is_refused_now_is_allowed_and_an_aware_time_is_taken_as_utc(
        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        with pytest.raises(ConfigError, match="past"):
            prices.schedule(s, "ST-1", "DSL", 1599, NOW - dt.timedelta(minutes=1), actor="op", now=NOW)
        with pytest.raises(ConfigError, match="a year"):
            prices.schedule(s, "ST-1", "DSL", 1599, NOW + dt.timedelta(days=400), actor="op", now=NOW)
        now_change = prices.schedule(s, "ST-1", "95", 1777, None, actor="op", now=NOW)
        assert now_change.effective_at == NOW
        madrid = dt.timezone(dt.timedelta(hours=1))
        aware = prices.schedule(s, "ST-1", "DSL", 1555, dt.datetime(2026, 12, 1, 15, 0, tzinfo=madrid),
                                actor="op", now=NOW.replace(tzinfo=dt.UTC))
        assert aware.effective_at == dt.datetime(2026, 12, 1, 14, 0)
        assert [c.id for c in prices.apply_due(s, NOW)] == [now_change.id]
        s.commit()
        assert _prices(s, "ST-1")[1, 2] == ("95", 1777)


def test_two_changes_for_one_time_are_refused_but_after_a_cancel_it_is_free(
        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        first = prices.schedule(s, "ST-1", "DSL", 1599, LATER, actor="op", now=NOW)
        with pytest.raises(ConfigError, match="already scheduled"):
            prices.schedule(s, "ST-1", "DSL", 1499, LATER, actor="op", now=NOW)
        prices.schedule(s, "ST-2", "DSL", 1499, LATER, actor="op", now=NOW)     # another station: fine
        prices.schedule(s, "ST-1", "95", 1499, LATER, actor="op", now=NOW)      # another product: fine
        prices.cancel(s, first.id, actor="op2", now=NOW)
        second = prices.schedule(s, "ST-1", "DSL", 1499, LATER, actor="op", now=NOW)
        s.commit()
        with pytest.raises(ConfigError, match="cancelled"):
            prices.cancel(s, first.id, actor="op2", now=NOW)
        prices.apply_due(s, LATER)
        s.commit()
        with pytest.raises(ConfigError, match="applied"):
            prices.cancel(s, second.id, actor="op2", now=LATER)
        assert prices.status_of(first) == "cancelled" and prices.status_of(second) == "applied"
        assert _prices(s, "ST-1")[1, 1] == ("DSL", 1499)
        assert ("op2", "price.cancel") in [(a[0], a[1]) for a in _actions(s)]


def test_changes_due_together_apply_in_time_order_so_the_latest_holds(
        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        late = prices.schedule(s, "ST-1", "DSL", 1701, NOW + dt.timedelta(hours=3), actor="op", now=NOW)
        early = prices.schedule(s, "ST-1", "DSL", 1602, NOW + dt.timedelta(hours=1), actor="op", now=NOW)
        s.commit()
        applied = prices.apply_due(s, NOW + dt.timedelta(days=1))
        s.commit()
        assert [c.id for c in applied] == [early.id, late.id]
        assert _prices(s, "ST-1")[1, 1] == ("DSL", 1701)


def test_what_cannot_be_priced_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        network.add_product(s, "LPG", "Autogas", actor="seed", now=NOW)
        for args, key in ((("ST-1", "LPG", 900), "product"), (("ST-9", "DSL", 900), "station"),
                          (("ST-1", "NOPE", 900), "product"), (("ST-1", "DSL", 0), "price_milli"),
                          (("ST-1", "DSL", 1_000_000), "price_milli")):
            with pytest.raises(ConfigError) as caught:
                prices.schedule(s, *args, LATER, actor="op", now=NOW)
            assert caught.value.context["key"] == key
        with pytest.raises(ConfigError):
            prices.cancel(s, 12345, actor="op", now=NOW)


def test_signature_follows_prices_products_and_stations_not_pending_changes(
        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        before = prices.signature(s)
        prices.schedule(s, "ST-1", "DSL", 1599, LATER, actor="op", now=NOW)
        s.commit()
        assert prices.signature(s) == before
        prices.apply_due(s, LATER)
        s.commit()
        applied = prices.signature(s)
        assert applied != before
        network.edit_product(s, "DSL", name="Diesel B7", code3=None, group="fuel", actor="op", now=NOW)
        s.commit()
        assert prices.signature(s) != applied


@pytest.mark.system
@pytest.mark.slow
def test_two_hosts_applying_at_once_on_postgresql_apply_and_audit_once(pg_url: str) -> None:
    engine, made = open_database(pg_url)
    try:
        _seed(made)
        with made() as s:
            change = prices.schedule(s, "ST-1", "DSL", 1599, LATER, actor="op", now=NOW)
            s.commit()
        found: dict[str, list[prices.PriceChange]] = {}

        def second_host() -> None:
            with made() as b:
                found["b"] = prices.apply_due(b, LATER)
                b.commit()

        with made() as a:
            assert [c.id for c in prices.apply_due(a, LATER)] == [change.id]     # holds the row, uncommitted
            other = threading.Thread(target=second_host)
            other.start()
            with made() as watch:           # the second host waits on the first's row lock
                deadline = time.monotonic() + 10
                while not watch.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                            "WHERE wait_event_type = 'Lock'")):
                    assert time.monotonic() < deadline, "the second host never reached the row"
                    watch.rollback()
            a.commit()
        other.join(10)
        assert found["b"] == []
        with made() as s:
            assert s.scalar(select(func.count()).select_from(AuditEntry)
                            .where(AuditEntry.action == "price.apply")) == 1
            assert _prices(s, "ST-1")[1, 1] == ("DSL", 1599)
    finally:
        engine.dispose()
