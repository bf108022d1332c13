"""Default periods end on the user's local today: at 22:30 UTC on 30 November a Moscow station's report and
a Moscow account's statement already cover 1 December."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from registry.fleet.admin import create_account, create_customer
from registry.models import Station
from tests.web_client import WebClient, WebDb

LATE = dt.datetime(2026, 11, 30, 22, 30)


def test_a_managers_report_ends_on_the_stations_local_date(signed_in: Callable[..., WebClient],
                                                           web_db: WebDb) -> None:
    with web_db.sessions() as s:
        s.add_all([Station(id="MSK", name="Moscow", timezone="Europe/Moscow"),
                   Station(id="LIS", name="Lisbon", timezone="Europe/Lisbon")])
        s.commit()
    web_db.app.state.clock = lambda: LATE
    moscow, lisbon = signed_in("station", station_ids="MSK"), signed_in("station", station_ids="LIS")
    assert moscow.get("/api/reports/turnover").json()["end"] == "2026-12-01"
    assert lisbon.get("/api/reports/turnover").json()["end"] == "2026-11-30"


def test_a_customers_statement_is_of_the_accounts_local_month(signed_in: Callable[..., WebClient],
                                                             web_db: WebDb) -> None:
    with web_db.sessions() as s:
        customer = create_customer(s, "Volga Ltd", actor="t", now=LATE)
        create_account(s, customer.id, "trucks", timezone="Europe/Moscow", actor="t", now=LATE)
        s.commit()
        customer_id = customer.id
    web_db.app.state.clock = lambda: LATE
    statement = signed_in("fleet", customer_id=customer_id).get("/api/customer/statement").json()
    assert statement["start"] == "2026-12-01" and statement["end"] == "2026-12-31"
