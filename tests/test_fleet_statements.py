"""registry.fleet.statements: a customer's sales for a period in local dates, per card and per vehicle
subtotals, held sales listed but not counted, as a text table and as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import admin, cards
from registry.fleet.statements import money, statement, statement_csv, statement_text
from registry.keys import load_or_create_keys
from registry.models import Station, Transaction

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
OPS = {"actor": "alice", "now": NOW}


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Session]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as session:
        session.add(Station(id="ST-001", name="North"))
        session.flush()
        yield session
    engine.dispose()


def sale(s: Session, n: int, *, account: int, card: int, masked: str, at: dt.datetime, cl: int, cents: int,
         vehicle: int | None = None, driver: int | None = None, odometer: int | None = None,
         held: bool = False) -> None:
    s.add(Transaction(sale_id=f"sale-{n}", seq=n, kind="fleet", card_id=card, device_id="T-0001",
                      station_id="ST-001", pump=1, nozzle=1, product="diesel", volume_cl=cl,
                      amount_cents=cents, price_milli=1659, card_masked=masked, finished_at=at,
                      received_at=at, held=held, account_id=account, vehicle_id=vehicle, driver_id=driver,
                      odometer_km=odometer))


def test_money_is_a_decimal_string() -> None:
    assert [money(c) for c in (0, 5, 1234, -1234, -5, 100)] == ["0.00", "0.05", "12.34", "-12.34", "-0.05",
                                                                 "1.00"]


def test_statement_per_card_and_vehicle_in_local_dates(s: Session, tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    customer = admin.create_customer(s, "Hauler GmbH", **OPS)
    other = admin.create_customer(s, "Someone Else", kind="individual", **OPS)
    berlin = admin.create_account(s, customer.id, "Trucks", timezone="Europe/Berlin", **OPS)
    utc = admin.create_account(s, customer.id, "Vans", **OPS)
    foreign = admin.create_account(s, other.id, "Car", **OPS)
    truck = admin.add_vehicle(s, berlin.id, "AB12", **OPS)
    van = admin.add_vehicle(s, utc.id, "VAN7", **OPS)
    dana = admin.add_driver(s, berlin.id, "0042", **OPS)
    issue = {"medium": "chip", "expiry": "2812", "pin": None} | OPS
    c1 = cards.issue_card(s, keys, berlin.id, "7077001000000019", **issue)
    c2 = cards.issue_card(s, keys, utc.id, "7077001000000027", **issue)
    c3 = cards.issue_card(s, keys, foreign.id, "7077001000000035", **issue)
    common: dict[str, Any] = {"account": berlin.id, "card": c1.id, "masked": c1.masked, "vehicle": truck.id}
    # 23:30 UTC on 30 November is 00:30 on 1 December in Berlin: in the December statement
    sale(s, 1, at=dt.datetime(2026, 11, 30, 23, 30), cl=40_00, cents=66_36, driver=dana.id, odometer=120_500,
         **common)
    sale(s, 2, at=dt.datetime(2026, 11, 30, 22, 30), cl=10_00, cents=16_59, **common)
    sale(s, 3, at=dt.datetime(2026, 12, 31, 22, 59), cl=5_00, cents=8_30, **common)
    sale(s, 4, at=dt.datetime(2026, 12, 31, 23, 0), cl=7_00, cents=11_61, **common)
    sale(s, 5, at=dt.datetime(2026, 12, 10, 8, 0), cl=99_00, cents=164_24, held=True,
         **common)
    sale(s, 6, account=utc.id, card=c2.id, masked=c2.masked, vehicle=van.id,
         at=dt.datetime(2026, 12, 5, 7, 15), cl=20_00, cents=33_18)
    sale(s, 7, account=utc.id, card=c2.id, masked=c2.masked, at=dt.datetime(2026, 12, 6, 7, 15), cl=1_00,
         cents=1_66)
    sale(s, 8, account=foreign.id, card=c3.id, masked=c3.masked, at=dt.datetime(2026, 12, 6), cl=3_00,
         cents=4_98)
    s.flush()
    st = statement(s, customer.id, dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    assert [(f"{r.local_time:%m-%d %H:%M}", r.vehicle, r.held) for r in st.rows] == [
        ("12-01 00:30", "AB12", False), ("12-05 07:15", "VAN7", False), ("12-06 07:15", "", False),
        ("12-10 09:00", "AB12", True), ("12-31 23:59", "AB12", False)]
    assert (st.rows[0].driver, st.rows[0].odometer_km) == ("0042", 120_500)
    by_card = {t.label: (t.sales, t.volume_cl, t.amount_cents) for t in st.by_card.values()}
    assert by_card == {f"{c1.masked} (card {c1.id})": (2, 45_00, 74_66),
                       f"{c2.masked} (card {c2.id})": (2, 21_00, 34_84)}
    by_vehicle = {k: (t.sales, t.volume_cl, t.amount_cents) for k, t in st.by_vehicle.items()}
    assert by_vehicle == {"AB12": (2, 45_00, 74_66), "VAN7": (1, 20_00, 33_18), "-": (1, 1_00, 1_66)}
    assert (st.total.sales, st.total.volume_cl, st.total.amount_cents) == (4, 66_00, 109_50)

    rows = list(csv.DictReader(io.StringIO(statement_csv(st))))
    assert [r["record"] for r in rows] == \
        ["sale"] * 5 + ["card_total"] * 2 + ["vehicle_total"] * 3 + ["total"]
    assert (rows[0]["date"], rows[0]["litres"], rows[0]["amount"], rows[0]["odometer"]) == \
        ("2026-12-01 00:30", "40.00", "66.36", "120500")
    assert rows[3]["held"] == "held" and rows[0]["held"] == ""
    assert (rows[-1]["litres"], rows[-1]["amount"], rows[-1]["sales"]) == ("66.00", "109.50", "4")
    text = statement_text(st)
    assert "Hauler GmbH" in text and "109.50" in text and "Per vehicle" in text and "held" in text
    assert "7077001000000019" not in text + statement_csv(st)


def test_statement_of_an_unknown_customer_or_an_empty_period(s: Session) -> None:
    with pytest.raises(ConfigError, match="unknown customer"):
        statement(s, 42, dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    customer = admin.create_customer(s, "Quiet Ltd", **OPS)
    with pytest.raises(ConfigError, match="on or after"):
        statement(s, customer.id, dt.date(2026, 12, 31), dt.date(2026, 12, 1))
    st = statement(s, customer.id, dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    assert st.rows == [] and st.total.sales == 0
    assert statement_csv(st).splitlines()[-1].startswith("total,")


def test_two_cards_with_one_masked_number_have_their_own_subtotals(s: Session, tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    customer = admin.create_customer(s, "Hauler GmbH", **OPS)
    account = admin.create_account(s, customer.id, "Trucks", **OPS)
    issue = {"medium": "chip", "expiry": "2812", "pin": None} | OPS
    a = cards.issue_card(s, keys, account.id, "7077001000000019", **issue)
    b = cards.issue_card(s, keys, account.id, "7077000000020019", **issue)     # masks the same
    assert a.masked == b.masked
    for n, card, cl in ((1, a, 10_00), (2, b, 20_00)):
        sale(s, n, account=account.id, card=card.id, masked=card.masked, at=dt.datetime(2026, 12, 2),
             cl=cl, cents=cl)
    s.flush()
    st = statement(s, customer.id, dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    assert sorted(t.volume_cl for t in st.by_card.values()) == [10_00, 20_00]
