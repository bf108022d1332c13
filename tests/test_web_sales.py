"""The latest sales page: what each role sees of the sales as they arrive (operators all, a station manager
their stations, a fleet customer their own accounts), the live fragment the page refreshes, the JSON."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from registry.fleet.admin import create_account, create_customer
from registry.models import Station, Transaction
from tests.web_client import WebClient, WebDb

NOW = dt.datetime(2026, 12, 1, 12, 0)


def _sale(station: str, amount: int, account_id: int | None = None) -> Transaction:
    return Transaction(sale_id=str(uuid.uuid4()), kind="fleet" if account_id else "bank", device_id="T1",
                       station_id=station, pump=1, nozzle=1, product="diesel", volume_cl=1000,
                       amount_cents=amount, price_milli=1659, card_masked="707700******0019", finished_at=NOW,
                       received_at=NOW, account_id=account_id)


def _world(db: WebDb) -> tuple[int, int]:
    with db.sessions() as s:
        s.add_all([Station(id="S1", name="North"), Station(id="S2", name="South")])
        mine = create_customer(s, "Mine Ltd", actor="t", now=NOW)
        theirs = create_customer(s, "Theirs Ltd", actor="t", now=NOW)
        a = create_account(s, mine.id, "trucks", actor="t", now=NOW)
        b = create_account(s, theirs.id, "vans", actor="t", now=NOW)
        s.flush()
        s.add_all([_sale("S1", 1111, a.id), _sale("S2", 2222, b.id), _sale("S2", 3333)])
        s.commit()
        return mine.id, theirs.id


def _amounts(c: WebClient) -> set[int]:
    answer = c.get("/api/sales")
    assert answer.status_code == 200
    return {x["amount_cents"] for x in answer.json()}


def test_each_role_sees_its_own_sales(signed_in: Callable[..., WebClient], web_db: WebDb) -> None:
    mine, _ = _world(web_db)
    assert _amounts(signed_in("operator")) == {1111, 2222, 3333}
    assert _amounts(signed_in("station", station_ids="S2")) == {2222, 3333}
    assert _amounts(signed_in("fleet", customer_id=mine)) == {1111}


def test_a_cardholder_sees_no_sales_list(signed_in: Callable[..., WebClient], web_db: WebDb) -> None:
    _world(web_db)
    from registry.loyalty.admin import create_account as loyalty_account
    with web_db.sessions() as s:
        account = loyalty_account(s, "Ana", issued_on=NOW.date(), actor="t", now=NOW)
        s.commit()
    c = signed_in("cardholder", account_id=account.id)
    assert c.get("/api/sales").status_code == 403


def test_the_page_refreshes_from_its_live_fragment(signed_in: Callable[..., WebClient],
                                                   web_db: WebDb) -> None:
    _world(web_db)
    c = signed_in("station", station_ids="S1")
    page = c.get("/sales")
    assert page.status_code == 200 and 'data-live="/sales/live"' in page.text
    live = c.get("/sales/live")
    assert live.status_code == 200 and "11.11" in live.text and "22.22" not in live.text
    assert "<html" not in live.text
    with web_db.sessions() as s:
        s.add(_sale("S1", 4444))
        s.commit()
    assert "44.44" in c.get("/sales/live").text
    assert "44.44" in c.get("/").text                     # the home page shows the latest too
