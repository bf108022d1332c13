"""registry.fleet.statements with voided sales (registry.voids): listed and marked "voided" in the statement,
its CSV and its PDF, and left out of its totals, so the statement's total is the customer's turnover
(registry.turnover) and what the ledger kept of the sales."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select
from test_registry_service import NOW, Env, sqlite_env

from registry.fleet import admin
from registry.fleet.statement_pdf import statement_pdf
from registry.fleet.statements import statement, statement_csv, statement_text
from registry.models import Account, Movement, Station, Transaction
from registry.turnover import TurnoverQuery, turnover
from registry.voids import void_sale
from registry.web.deps import utcnow
from tests.web_client import WebClient, WebDb


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def test_a_voided_sale_is_marked_and_not_counted(env: Env) -> None:
    with env.sessions() as s:
        customer = admin.create_customer(s, "Acme Haulage", actor="op", now=NOW)
        account = s.get(Account, 1)                 # the seed's ACME account, wallet 1 (litres)
        assert account is not None
        account.customer_id = customer.id
        s.commit()
        customer_id = customer.id
    kept, _ = env.sale(env.auth()["auth_id"], volume_cl=2500)
    voided, _ = env.sale(env.auth()["auth_id"], volume_cl=4000)
    with env.sessions() as s:
        void_sale(s, voided["sale_id"], actor="op", reason="fuel returned", now=NOW)
        s.commit()
    day = NOW.date()
    with env.sessions() as s:
        st = statement(s, customer_id, day, day)
        report = turnover(s, TurnoverQuery(day, day, by="customer", customer_id=customer_id))
        straight = turnover(s, TurnoverQuery(day, day, by="customer", customer_id=customer_id),
                            path="straight")
        paid = -int(s.scalar(select(func.sum(Movement.amount)).where(
            Movement.wallet_id == 1, Movement.sale_id.in_([kept["sale_id"], voided["sale_id"]]))) or 0)
    assert [(r.volume_cl, r.voided, r.held) for r in st.rows] == [(2500, False, False), (4000, True, False)]
    total = (st.total.sales, st.total.volume_cl, st.total.amount_cents)
    assert total == (1, 2500, kept["amount_cents"])
    for r in (report, straight):
        assert (r.totals.sales, r.totals.volume_cl, r.totals.amount_cents) == total
    assert paid == st.total.volume_cl                  # a litres wallet: the ledger kept 25 L
    assert [(t.sales, t.volume_cl) for t in st.by_card.values()] == [(1, 2500)]
    assert [(t.sales, t.volume_cl) for t in st.by_vehicle.values()] == [(1, 2500)]

    rows = list(csv.DictReader(io.StringIO(statement_csv(st))))
    assert [(r["record"], r["voided"], r["held"]) for r in rows[:2]] == [("sale", "", ""),
                                                                          ("sale", "voided", "")]
    assert (rows[-1]["record"], rows[-1]["litres"], rows[-1]["sales"]) == ("total", "25.00", "1")
    assert "voided" in statement_text(st)
    pdf = "".join(page.extract_text() for page in PdfReader(io.BytesIO(statement_pdf(st))).pages)
    assert "voided" in pdf and "1 sales, 25.00 L" in pdf


def test_the_customers_statement_page_and_api_mark_a_voided_sale(
        web_db: WebDb, signed_in: Callable[..., WebClient]) -> None:
    ops = {"actor": "operator", "now": utcnow()}
    at = dt.datetime(2026, 11, 3, 9)
    with web_db.sessions() as s:
        s.add(Station(id="ST-001", name="North"))
        customer = admin.create_customer(s, "ACME Haulage", **ops)
        account = admin.create_account(s, customer.id, "Trucks", **ops)
        for n, flags in ((1, ""), (2, "voided")):
            s.add(Transaction(sale_id=f"sale-{n}", seq=n, kind="fleet", device_id="T-0001",
                              station_id="ST-001", pump=1, nozzle=1, product="diesel", volume_cl=10_00 * n,
                              amount_cents=16_59 * n, price_milli=1659, card_masked="707700******0019",
                              finished_at=at, received_at=at, account_id=account.id, flags=flags))
        s.commit()
        customer_id = customer.id
    for lang, word in (("en", "voided"), ("es", "anulada")):
        client = signed_in("fleet", customer_id=customer_id, language=lang)
        data = client.get("/api/customer/statement", params={"month": "2026-11"}).json()
        assert [r["voided"] for r in data["rows"]] == [False, True]
        assert (data["total"]["sales"], data["total"]["amount_cents"]) == (1, 16_59)
        assert word in client.get("/customer/statement?month=2026-11").text
        pdf = client.get("/customer/statement.pdf?month=2026-11").content
        assert word in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
