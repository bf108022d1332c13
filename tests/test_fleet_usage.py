"""registry.fleet.usage on a real database: settled sales counted in every period of the account's time
zone, open authorizations counted until they end, and each limit shown with what is used of it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pg_env
import pytest
import test_fleet_ledger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_fleet_ledger import NOW, make_account, make_authorization, make_card

from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import ledger, usage
from registry.models import Account, Authorization, Card, Limit, Usage

BERLIN = "Europe/Berlin"

pg_url = pg_env.pg_url                      # the module's PostgreSQL (a fixture)
any_sm = test_fleet_ledger.any_sm           # a fresh SQLite database, or that PostgreSQL (a fixture)


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    yield made
    engine.dispose()


def rows(s: Session, scope: str, scope_id: int) -> dict[str, tuple[int, int, int]]:
    found = s.scalars(select(Usage).where(Usage.scope == scope, Usage.scope_id == scope_id))
    return {u.period_key: (u.amount_cents, u.volume_cl, u.count) for u in found}


def test_a_sale_counts_in_every_period_of_the_account_zone_for_account_and_card(
        sm: sessionmaker[Session]) -> None:
    account_id, _ = make_account(sm, tz=BERLIN)
    card_id = make_card(sm, account_id)
    new_year = dt.datetime(2026, 12, 31, 23, 30)           # 00:30 on 1 January 2027 in Berlin
    with sm() as s:
        usage.record(s, account_id=account_id, card_id=card_id, tz=BERLIN, at_utc=new_year,
                     amount_cents=8_000, volume_cl=4_000)
        usage.record(s, account_id=account_id, card_id=card_id, tz=BERLIN, at_utc=new_year,
                     amount_cents=2_000, volume_cl=1_000)
        s.commit()
        # 1 January 2027 is a Friday of ISO week 53 of 2026
        expected = {key: (10_000, 5_000, 2) for key in ("D2027-01-01", "W2026-53", "M2027-01", "Y2027", "L")}
        assert rows(s, "account", account_id) == expected
        assert rows(s, "card", card_id) == expected


def test_a_sale_without_a_card_counts_for_the_account_only_and_a_reversal_takes_it_back(
        sm: sessionmaker[Session]) -> None:
    account_id, _ = make_account(sm)
    card_id = make_card(sm, account_id)
    with sm() as s:
        usage.record(s, account_id=account_id, card_id=None, tz="UTC", at_utc=NOW, amount_cents=500,
                     volume_cl=300)
        assert rows(s, "card", card_id) == {}
        usage.record(s, account_id=account_id, card_id=None, tz="UTC", at_utc=NOW, amount_cents=-500,
                     volume_cl=-300, count=-1)
        assert set(rows(s, "account", account_id).values()) == {(0, 0, 0)}


def test_used_adds_open_authorizations_in_every_period_and_a_sale_starts_from_nothing(
        sm: sessionmaker[Session]) -> None:
    account_id, _ = make_account(sm)
    card_id = make_card(sm, account_id)
    other_card = make_card(sm, account_id)
    today = NOW + dt.timedelta(days=1)           # Wednesday 2 December 2026
    with sm() as s:
        usage.record(s, account_id=account_id, card_id=card_id, tz="UTC", at_utc=NOW, amount_cents=1_000,
                     volume_cl=600)
        usage.record(s, account_id=account_id, card_id=card_id, tz="UTC", at_utc=today, amount_cents=300,
                     volume_cl=200)
        make_authorization(s, card_id, account_id, at=today, allowed_cl=5_000, allowed_cents=9_000)
        make_authorization(s, other_card, account_id, at=today, allowed_cl=1_000, allowed_cents=2_000)
        lapsed = make_authorization(s, card_id, account_id, at=today - dt.timedelta(hours=1), allowed_cl=7)
        done = make_authorization(s, card_id, account_id, at=today, allowed_cl=11)
        s.get(Authorization, done).status = "completed"            # type: ignore[union-attr]
        s.commit()
        assert lapsed
        card = usage.used(s, "card", card_id, "UTC", today)
        assert card[("day", "money")] == 300 + 9_000
        assert card[("day", "volume")] == 200 + 5_000
        assert card[("day", "count")] == 1 + 1
        assert card[("month", "money")] == 1_300 + 9_000            # yesterday's sale is in this month
        assert card[("lifetime", "count")] == 2 + 1
        assert {card[("sale", unit)] for unit in usage.UNITS} == {0}
        account = usage.used(s, "account", account_id, "UTC", today)
        assert account[("week", "volume")] == 800 + 5_000 + 1_000
        assert account[("year", "count")] == 2 + 2
        assert usage.used(s, "card", card_id, "UTC", today + dt.timedelta(days=1))[("day", "money")] == 0
        with pytest.raises(ConfigError, match="scope"):
            usage.used(s, "station", 1, "UTC", NOW)
        with pytest.raises(ConfigError, match="time zone"):
            usage.used(s, "card", card_id, "Mars/Olympus", NOW)


def test_used_sees_a_sale_recorded_in_the_same_session(sm: sessionmaker[Session]) -> None:
    """record updates rows with a statement: used reads them again, not the session's old copies."""
    account_id, _ = make_account(sm)
    with sm() as s:
        usage.record(s, account_id=account_id, card_id=None, tz="UTC", at_utc=NOW, amount_cents=100,
                     volume_cl=50)
        assert usage.used(s, "account", account_id, "UTC", NOW)[("day", "money")] == 100
        loaded = list(s.scalars(select(Usage)))          # Usage objects the session keeps meanwhile
        usage.record(s, account_id=account_id, card_id=None, tz="UTC", at_utc=NOW, amount_cents=100,
                     volume_cl=50)
        assert usage.used(s, "account", account_id, "UTC", NOW)[("day", "money")] == 200
        assert loaded


def test_limit_views_show_each_limit_of_the_card_and_its_account_with_its_use(
        sm: sessionmaker[Session]) -> None:
    account_id, _ = make_account(sm, tz=BERLIN)
    card_id = make_card(sm, account_id)
    other = make_card(sm, account_id)
    with sm() as s:
        s.add_all([Limit(scope="card", scope_id=card_id, period="day", unit="volume", maximum=10_000),
                   Limit(scope="card", scope_id=card_id, period="sale", unit="money", maximum=15_000),
                   Limit(scope="account", scope_id=account_id, period="month", unit="count", maximum=50),
                   Limit(scope="card", scope_id=other, period="day", unit="volume", maximum=1)])
        usage.record(s, account_id=account_id, card_id=card_id, tz=BERLIN, at_utc=NOW, amount_cents=4_000,
                     volume_cl=2_500)
        usage.record(s, account_id=account_id, card_id=other, tz=BERLIN, at_utc=NOW, amount_cents=1,
                     volume_cl=1)
        s.commit()
        card, account = s.get(Card, card_id), s.get(Account, account_id)
        assert card is not None and account is not None
        views = usage.limit_views(s, card, account, NOW)
    assert [(v.scope, v.period, v.unit, v.maximum, v.used) for v in views] == [
        ("card", "day", "volume", 10_000, 2_500),
        ("card", "sale", "money", 15_000, 0),
        ("account", "month", "count", 50, 2)]


def independent_keys(at_utc: dt.datetime, tz: str) -> list[str]:
    """The period keys of the design, computed here without registry.fleet.rules."""
    local = at_utc.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(tz))
    year, week, _ = local.isocalendar()
    return [f"D{local.date().isoformat()}", f"W{year}-{week:02d}", f"M{local.year}-{local.month:02d}",
            f"Y{local.year}", "L"]


SALES = st.lists(st.tuples(st.datetimes(dt.datetime(2026, 12, 20), dt.datetime(2027, 1, 10)),
                           st.integers(0, 20_000), st.integers(0, 10_000)), max_size=15)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sales=SALES, tz=st.sampled_from(["UTC", BERLIN, "America/New_York", "Pacific/Kiritimati"]))
def test_usage_rows_are_the_sums_of_the_sales_in_each_period(sm: sessionmaker[Session],
                                                             sales: list[tuple[dt.datetime, int, int]],
                                                             tz: str) -> None:
    account_id, _ = make_account(sm, tz=tz)
    card_id = make_card(sm, account_id)
    expected: dict[str, tuple[int, int, int]] = {}
    with sm() as s:
        for at, cents, cl in sales:
            usage.record(s, account_id=account_id, card_id=card_id, tz=tz, at_utc=at, amount_cents=cents,
                         volume_cl=cl)
            for key in independent_keys(at, tz):
                c, v, n = expected.get(key, (0, 0, 0))
                expected[key] = (c + cents, v + cl, n + 1)
        s.commit()
        assert rows(s, "account", account_id) == expected == rows(s, "card", card_id)
        for at, _, _ in sales:
            day = expected[independent_keys(at, tz)[0]]
            seen = usage.used(s, "card", card_id, tz, at)
            assert (seen[("day", "money")], seen[("day", "volume")], seen[("day", "count")]) == day


def test_sales_recorded_at_once_under_the_account_lock_are_all_counted(any_sm: sessionmaker[Session]) -> None:
    """Four sessions record into the same new period rows at once: under lock_account the second finds
    the first one's row (no duplicate insert), and every sale is counted."""
    account_id, _ = make_account(any_sm)
    card_id = make_card(any_sm, account_id)
    failures: list[BaseException] = []

    def sell() -> None:
        try:
            for _ in range(5):
                with any_sm() as s:
                    ledger.lock_account(s, account_id)
                    usage.record(s, account_id=account_id, card_id=card_id, tz="UTC", at_utc=NOW,
                                 amount_cents=100, volume_cl=10)
                    s.commit()
        except BaseException as exc:        # noqa: BLE001  (reported by the test, not lost in a thread)
            failures.append(exc)

    threads = [threading.Thread(target=sell) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with any_sm() as s:
        assert set(rows(s, "account", account_id).values()) == {(2_000, 200, 20)}
        assert set(rows(s, "card", card_id).values()) == {(2_000, 200, 20)}
