"""The report pages and API (registry.web.api_reports, pages_reports): turnover within each role's scope
(a station manager's stations, a fleet customer's own sales; another's id is 404), the table, the chart,
the CSV and the PDF as downloads; loyalty points, vouchers and terminals."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

from pypdf import PdfReader

from registry import network
from registry.fleet.admin import create_account, create_customer
from registry.models import Card, Device, Transaction, Voucher
from registry.turnover_rollup import catch_up
from registry.web.deps import utcnow
from tests.web_client import WebClient, WebDb

SignedIn = Callable[..., WebClient]


def _period(today: dt.date) -> dict[str, str]:
    """This month up to today."""
    return {"start": today.replace(day=1).isoformat(), "end": today.isoformat()}


def _sale(station: str, pump: int, product: str, volume: int, at: dt.datetime, *, card: int | None = None,
          account: int | None = None) -> Transaction:
    return Transaction(sale_id=str(uuid.uuid4()), device_id="T-1", station_id=station, pump=pump, nozzle=1,
                       product=product, volume_cl=volume, amount_cents=volume * 1659 // 1000,
                       price_milli=1659, card_masked="700000******0011", finished_at=at,
                       received_at=at, card_id=card, account_id=account,
                       kind="fleet" if card else "bank")


def _network(db: WebDb, now: dt.datetime) -> dict[str, int]:
    """Two stations, two products, two customers with a card each, sales at both stations at `now`."""
    with db.sessions() as s:
        network.add_station(s, "ST-1", "Calle Mayor", actor="seed", now=now)
        network.add_station(s, "ST-2", "=Ring Road", actor="seed", now=now)     # a formula-looking name
        network.add_product(s, "DSL", "Diesel", actor="seed", now=now)
        network.add_product(s, "95", "Super 95", actor="seed", now=now)
        ids: dict[str, int] = {}
        for name in ("ACME", "Other"):
            customer = create_customer(s, name, actor="seed", now=now)
            account = create_account(s, customer.id, f"{name} main", actor="seed", now=now)
            card = Card(token=uuid.uuid4().hex, masked=f"7000 **** **** {len(ids):04d}", expiry="2912",
                        pin_verifier="", account_id=account.id)
            s.add(card)
            s.flush()
            ids[name], ids[f"{name}-card"], ids[f"{name}-account"] = customer.id, card.id, account.id
        s.add_all([_sale("ST-1", 1, "DSL", 1000, now), _sale("ST-1", 2, "95", 2000, now),
                   _sale("ST-1", 1, "DSL", 3000, now, card=ids["ACME-card"], account=ids["ACME-account"]),
                   _sale("ST-2", 1, "DSL", 4000, now, card=ids["Other-card"], account=ids["Other-account"]),
                   Device(id="T-1", station_id="ST-1", pin_key_hex="00" * 16, online=True, last_seen_at=now,
                          backlog=2, backlog_oldest_s=30),
                   Device(id="T-2", station_id="ST-2", pin_key_hex="00" * 16)])
        s.commit()
    return ids


def _turnover(client: WebClient, today: dt.date, **params: object) -> dict[str, object]:
    answer = client.get("/api/reports/turnover", params={**_period(today), **params})
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


def _lines(report: dict[str, object]) -> dict[str, tuple[int, int]]:
    return {str(x["label"]): (x["sales"], x["volume_cl"]) for x in report["lines"]}  # type: ignore[attr-defined]


def test_an_operator_sees_every_station_before_and_after_the_rollup(web_db: WebDb,
                                                                     signed_in: SignedIn) -> None:
    now = utcnow()
    _network(web_db, now)
    today = now.date()
    operator = signed_in("operator")
    before = _turnover(operator, today)
    assert _lines(before) == {"Calle Mayor": (3, 6000), "=Ring Road": (1, 4000)}
    catch_up(web_db.sessions, utcnow())
    after = _turnover(operator, today)
    assert after["lines"] == before["lines"] and after["source"] == "station summary"
    assert after["total"]["sales"] == 4                                            # type: ignore[index]
    assert _lines(_turnover(operator, today, by="product")) == {"Diesel": (3, 8000), "Super 95": (1, 2000)}
    by_pump = _lines(_turnover(operator, today, by="pump", station="ST-1"))
    assert by_pump == {"Calle Mayor · pump 1": (2, 4000), "Calle Mayor · pump 2": (1, 2000)}
    by_customer = _lines(_turnover(operator, today, by="customer"))
    assert by_customer == {"ACME": (1, 3000), "Other": (1, 4000)}
    assert "/api/reports/turnover" in operator.get("/api/openapi.json").text


def test_a_station_manager_sees_only_their_stations(web_db: WebDb, signed_in: SignedIn) -> None:
    now = utcnow()
    ids = _network(web_db, now)
    today = now.date()
    manager = signed_in("station", station_ids="ST-2")
    assert _lines(_turnover(manager, today)) == {"=Ring Road": (1, 4000)}
    assert _lines(_turnover(manager, today, by="day")) == {today.isoformat(): (1, 4000)}
    for params in ({"station": "ST-1"}, {"customer": ids["ACME"]}, {"card": ids["ACME-card"]}):
        answer = manager.get("/api/reports/turnover", params=params)
        assert answer.status_code == 404, params
    assert manager.get("/api/reports/turnover", params={"by": "customer"}).status_code == 403
    assert manager.get("/api/reports/vouchers").status_code == 403
    page = manager.get("/reports")
    assert page.status_code == 200 and "Calle Mayor" not in page.text and "Ring Road" in page.text


def test_a_fleet_customer_sees_only_their_own_sales(web_db: WebDb, signed_in: SignedIn) -> None:
    now = utcnow()
    ids = _network(web_db, now)
    today = now.date()
    fleet = signed_in("fleet", customer_id=ids["ACME"])
    assert _lines(_turnover(fleet, today)) == {"Calle Mayor": (1, 3000)}
    assert _lines(_turnover(fleet, today, by="card")) == {"7000 **** **** 0000": (1, 3000)}
    assert _lines(_turnover(fleet, today, station="ST-2")) == {}
    for params in ({"customer": ids["Other"]}, {"card": ids["Other-card"]}, {"station": "ST-9"}):
        assert fleet.get("/api/reports/turnover", params=params).status_code == 404, params
    assert fleet.get("/api/reports/loyalty").status_code == 403
    holder = signed_in("cardholder", account_id=_loyalty_account(web_db, today))
    assert holder.get("/api/reports/turnover").status_code == 403


def _loyalty_account(db: WebDb, today: dt.date) -> int:
    from registry.loyalty.admin import create_account
    with db.sessions() as s:
        account = create_account(s, "Ana", issued_on=today, actor="test", now=dt.datetime(2026, 1, 1))
        s.commit()
        return account.id


def test_the_page_shows_the_table_a_chart_and_links_to_csv_and_pdf(web_db: WebDb,
                                                                    signed_in: SignedIn) -> None:
    now = utcnow()
    _network(web_db, now)
    period = _period(now.date())
    operator = signed_in("operator")
    page = operator.get("/reports", params={**period, "by": "station"})
    assert page.status_code == 200
    assert 'id="report-table"' in page.text and "Calle Mayor" in page.text and "60.00" in page.text
    svg = page.text[page.text.index("<svg"):page.text.index("</svg>") + 6]
    ET.fromstring(svg)                                           # well-formed markup
    query = f"start={period['start']}&amp;end={period['end']}&amp;by=station"      # escaped in HTML
    assert f"/reports/turnover.csv?{query}" in page.text and f"/reports/turnover.pdf?{query}" in page.text
    ru = signed_in("operator")
    ru.form("/language", {"lang": "ru", "back": "/reports"})
    assert "Оборот" in ru.get("/reports").text


def test_csv_and_pdf_are_downloads_of_the_same_table(web_db: WebDb, signed_in: SignedIn) -> None:
    now = utcnow()
    _network(web_db, now)
    operator = signed_in("operator")
    params = {**_period(now.date()), "by": "station"}
    answer = operator.get("/reports/turnover.csv", params=params)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows == [["Station", "Sales", "Litres", "Amount"], ["Calle Mayor", "3", "60.00", "99.54"],
                    ["'=Ring Road", "1", "40.00", "66.36"], ["Total", "4", "100.00", "165.90"]]
    pdf = operator.get("/reports/turnover.pdf", params=params)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Calle Mayor" in text and "165.90" in text
    assert operator.get("/reports/nothing.csv").status_code == 404


def test_terminals_vouchers_and_loyalty_reports(web_db: WebDb, signed_in: SignedIn) -> None:
    now = utcnow()
    _network(web_db, now)
    with web_db.sessions() as s:
        s.add_all([Voucher(code_digest="a" * 64, code_hint="AAAA", product="DSL", volume_cl=2000,
                           status="issued", issued_at=now),
                   Voucher(code_digest="b" * 64, code_hint="BBBB", product="DSL", volume_cl=3000,
                           status="redeemed", issued_at=now, redeemed_at=now, terminal="T-1")])
        s.commit()
    operator = signed_in("operator")
    terminals = operator.get("/api/reports/terminals").json()
    assert (terminals["online"], terminals["offline"]) == (1, 1)
    assert {t["device"]: t["backlog"] for t in terminals["terminals"]} == {"T-1": 2, "T-2": 0}
    vouchers = operator.get("/api/reports/vouchers").json()["products"]
    assert vouchers == [{"product": "DSL", "issued": 2, "issued_cl": 5000, "redeemed": 1, "redeemed_cl": 3000,
                         "voided": 0}]
    assert operator.get("/api/reports/loyalty").json()["stations"] == []
    for kind in ("loyalty", "vouchers", "terminals"):
        assert operator.get(f"/reports/{kind}").status_code == 200, kind
        assert operator.get(f"/reports/{kind}.csv").status_code == 200, kind
    manager = signed_in("station", station_ids="ST-2")
    assert [t["device"] for t in manager.get("/api/reports/terminals").json()["terminals"]] == ["T-2"]


def test_a_wrong_question_is_a_clear_answer(web_db: WebDb, signed_in: SignedIn) -> None:
    operator = signed_in("operator")
    for params, status in (({"by": "vehicle"}, 400), ({"start": "2026-13-01"}, 422),
                           ({"start": "2026-05-02", "end": "2026-05-01"}, 400),
                           ({"start": "2020-01-01", "end": "2026-01-01"}, 400)):
        assert operator.get("/api/reports/turnover", params=params).status_code == status, params
    assert operator.get("/reports", params={"start": "yesterday"}).status_code == 400
