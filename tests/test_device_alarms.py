"""registry.device_alarms: what is open per terminal (the latest of door_open/door_closed, a tamper not yet
cleared, paper low), the alarms of the last 24 hours, and a terminal's events newest first, paged and
filtered by severity; on SQLite and on PostgreSQL (tests/pg_env.py)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import pg_env
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from registry.device_alarms import ALARM_WINDOW, AlarmState, alarm_states, event_position, events
from registry.modelbase import Base
from registry.models import Device, DeviceEvent, Station

NOW = dt.datetime(2026, 12, 2, 12, 0)
_IDS = itertools.count(1)
SEVERITY = {"door_open": "alarm", "tamper": "alarm", "door_closed": "info", "tamper_cleared": "info",
            "paper_low": "warning", "paper_ok": "info", "sales_parked": "alarm", "restarting": "info"}


pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def s(request: pytest.FixtureRequest) -> Iterator[Session]:
    on_pg = request.param == "postgresql"
    engine = create_engine(request.getfixturevalue("pg_url") if on_pg else "sqlite://")
    Base.metadata.drop_all(engine)           # each test from an empty schema
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Station(id="ST-1", name="Calle Mayor"))
        session.flush()
        session.add_all(Device(id=d, station_id="ST-1", pin_key_hex="00" * 16) for d in ("T-1", "T-2", "T-3"))
        session.commit()
        yield session
    engine.dispose()


def _event(s: Session, device: str, code: str, minutes_ago: float, detail: str = "") -> DeviceEvent:
    at = NOW - dt.timedelta(minutes=minutes_ago)
    row = DeviceEvent(event_id=f"00000000-0000-4000-8000-{next(_IDS):012d}", device_id=device, at=at,
                      received_at=NOW, severity=SEVERITY[code], code=code, detail=detail)
    s.add(row)
    s.commit()
    return row


def test_the_latest_of_a_pair_says_what_is_open(s: Session) -> None:
    _event(s, "T-1", "door_open", 30)
    _event(s, "T-1", "door_closed", 20)
    _event(s, "T-1", "door_open", 10)            # open again
    _event(s, "T-1", "paper_low", 50)
    _event(s, "T-2", "door_open", 30)
    _event(s, "T-2", "door_closed", 5)
    _event(s, "T-2", "paper_low", 40)
    _event(s, "T-2", "paper_ok", 35)
    states = alarm_states(s, ["T-1", "T-2", "T-3", "T-404"], NOW)
    assert states["T-1"] == AlarmState(door_open_since=NOW - dt.timedelta(minutes=10),
                                       paper_low_since=NOW - dt.timedelta(minutes=50), alarms_recent=2)
    assert (states["T-1"].state, states["T-1"].tone) == ("door_open", "alarm")
    assert states["T-2"] == AlarmState(alarms_recent=1)
    assert (states["T-2"].state, states["T-2"].tone) == ("ok", "ok")
    assert states["T-3"] == AlarmState() and "T-404" not in states
    assert alarm_states(s, [], NOW) == {}


def test_the_order_received_decides_what_is_open_not_the_terminals_clock(s: Session) -> None:
    """A terminal sends its events in the order it raised them (its outbox keeps that order across an
    outage); its clock may be wrong (a Pi that has not its time yet after a power cut)."""
    _event(s, "T-1", "tamper_cleared", 5)
    _event(s, "T-1", "tamper", 55)              # tripped after the clearing, stamped by a clock running late
    assert alarm_states(s, ["T-1"], NOW)["T-1"].state == "tamper"
    _event(s, "T-2", "door_open", 5)
    _event(s, "T-2", "door_closed", 5)          # the same second: the later received wins
    assert alarm_states(s, ["T-2"], NOW)["T-2"].door_open_since is None


def test_a_tamper_stays_open_until_cleared_whatever_the_door_does(s: Session) -> None:
    _event(s, "T-1", "door_open", 60 * 30)
    _event(s, "T-1", "tamper", 60 * 30)         # thirty hours ago: out of the alarm count, still open
    _event(s, "T-1", "door_closed", 60 * 29)
    state = alarm_states(s, ["T-1"], NOW)["T-1"]
    assert state.tamper_since == NOW - dt.timedelta(hours=30) and state.door_open_since is None
    assert (state.state, state.tone, state.alarms_recent) == ("tamper", "alarm", 0)
    _event(s, "T-1", "door_open", 3)
    assert alarm_states(s, ["T-1"], NOW)["T-1"].state == "tamper"           # the worst shown first
    _event(s, "T-1", "tamper_cleared", 2)
    state = alarm_states(s, ["T-1"], NOW)["T-1"]
    assert (state.tamper_since, state.state, state.alarms_recent) == (None, "door_open", 1)
    _event(s, "T-1", "tamper", 1)               # tripped again
    assert alarm_states(s, ["T-1"], NOW)["T-1"].tamper_since == NOW - dt.timedelta(minutes=1)


def test_alarms_count_over_the_window_by_severity(s: Session) -> None:
    window = ALARM_WINDOW.total_seconds() / 60
    _event(s, "T-1", "sales_parked", window + 1)      # just out
    _event(s, "T-1", "sales_parked", window - 1)
    _event(s, "T-1", "door_open", 2)
    _event(s, "T-1", "paper_low", 1)                  # a warning: not an alarm
    _event(s, "T-1", "restarting", 1)
    state = alarm_states(s, ["T-1"], NOW)["T-1"]
    assert state.alarms_recent == 2 and state.state == "door_open" and state.paper_low_since is not None


def test_events_newest_first_paged_and_filtered(s: Session) -> None:
    codes = ["door_open", "door_closed", "paper_low", "tamper", "restarting", "door_open", "tamper_cleared"]
    rows = [_event(s, "T-1", code, 100 - i, detail=f"#{i}") for i, code in enumerate(codes)]
    _event(s, "T-2", "door_open", 0)
    newest = events(s, "T-1")
    assert [e.detail for e in newest] == [f"#{i}" for i in reversed(range(len(codes)))]
    first = events(s, "T-1", limit=3)
    assert [e.code for e in first] == ["tamper_cleared", "door_open", "restarting"]
    cursor = event_position(s, "T-1", first[-1].id)
    assert cursor == (rows[4].at, rows[4].id)
    older = events(s, "T-1", limit=3, before=cursor)
    assert [e.code for e in older] == ["tamper", "paper_low", "door_closed"]
    assert [e.detail for e in events(s, "T-1", severity="alarm")] == ["#5", "#3", "#0"]
    assert [e.code for e in events(s, "T-1", severity="warning", before=cursor)] == ["paper_low"]
    assert events(s, "T-3") == [] and events(s, "T-1", limit=0) == []


def test_a_cursor_is_one_of_this_terminals_events(s: Session) -> None:
    other = _event(s, "T-2", "door_open", 1)
    assert event_position(s, "T-1", other.id) is None
    assert event_position(s, "T-1", 999_999) is None


def test_events_of_one_moment_page_by_the_store_order(s: Session) -> None:
    rows = [_event(s, "T-1", "restarting", 1, detail=str(i)) for i in range(5)]
    first = events(s, "T-1", limit=2)
    assert [e.detail for e in first] == ["4", "3"]
    rest = events(s, "T-1", before=event_position(s, "T-1", first[-1].id))
    assert [e.detail for e in rest] == ["2", "1", "0"] and rest[-1].id == rows[0].id
