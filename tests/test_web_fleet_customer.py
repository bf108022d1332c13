"""A fleet customer's pages and API (registry.web.api_fleet_customer, pages_fleet_customer) over the app on a
real SQLite registry: their own accounts, wallets, limits and masked cards only; another customer's card or
account is 404 whichever id is edited into a URL or an API call; a block is at once, audited with the actor
"web:<login>" and puts the card on the stop-list; a limit is set on their own card or account; the month's
statement as JSON, CSV and PDF."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from registry.fleet import admin, cards
from registry.loyalty import admin as loyalty
from registry.models import AuditEntry, Card, Limit, Station, Transaction
from registry.web.api_fleet_customer import BLOCKING
from registry.web.deps import utcnow
from registry.web.errors import BadInput
from registry.web.pages_fleet_customer import parse_maximum
from registry.web.texts import translator
from tests.web_client import WebClient, WebDb

NUMBERS = {"truck": "7077001000000019", "van": "7077001000000027", "other": "7077001000000035"}
SignIn = Callable[..., WebClient]


@dataclass
class Fleet:
    customer: int
    account: int
    truck: int          # active card with a vehicle
    van: int            # active card
    other_customer: int
    other_account: int
    other_card: int


def sale(n: int, account: int, card: int, masked: str, at: dt.datetime, cl: int, cents: int,
         vehicle: int | None = None, held: bool = False) -> Transaction:
    return Transaction(sale_id=f"sale-{n}", seq=n, kind="fleet", card_id=card, device_id="T-0001",
                       station_id="ST-001", pump=1, nozzle=1, product="diesel", volume_cl=cl,
                       amount_cents=cents, price_milli=1659, card_masked=masked, finished_at=at,
                       received_at=at, held=held, account_id=account, vehicle_id=vehicle)


@pytest.fixture
def fleet(web_db: WebDb) -> Fleet:
    ops: dict[str, Any] = {"actor": "operator", "now": utcnow()}
    issue: dict[str, Any] = {"medium": "chip", "expiry": "3012", "pin": None, "activate": True, **ops}
    with web_db.sessions() as s:
        s.add(Station(id="ST-001", name="North"))
        acme = admin.create_customer(s, "ACME Haulage", **ops)
        account = admin.create_account(s, acme.id, "Trucks", timezone="Europe/Madrid", **ops)
        truck = admin.add_vehicle(s, account.id, "AB12", **ops)
        money = admin.add_wallet(s, account.id, unit="money", mode="postpaid", credit_limit=5000_00,
                                 name="Fuel money", **ops)
        admin.add_wallet(s, account.id, unit="volume", name="Diesel litres", **ops)
        admin.topup(s, money.id, 120_00, reason="bank transfer", **ops)
        admin.set_limit(s, "account", account.id, "month", "volume", 2000_00, **ops)
        c1 = cards.issue_card(s, web_db.keys, account.id, NUMBERS["truck"], vehicle_id=truck.id, **issue)
        c2 = cards.issue_card(s, web_db.keys, account.id, NUMBERS["van"], **issue)
        admin.set_limit(s, "card", c1.id, "day", "money", 150_00, **ops)
        rival = admin.create_customer(s, "Rival Transport", **ops)
        rival_account = admin.create_account(s, rival.id, "Vans", **ops)
        c3 = cards.issue_card(s, web_db.keys, rival_account.id, NUMBERS["other"], **issue)
        nov = dt.datetime(2026, 11, 1, 9)
        s.add_all([sale(1, account.id, c1.id, c1.masked, nov.replace(day=3), 40_00, 66_36, truck.id),
                   sale(2, account.id, c2.id, c2.masked, nov.replace(day=4), 10_00, 16_59),
                   sale(3, account.id, c2.id, c2.masked, nov.replace(day=5), 99_00, 164_24, held=True),
                   sale(4, rival_account.id, c3.id, c3.masked, nov.replace(day=6), 5_00, 8_30)])
        s.commit()
        return Fleet(acme.id, account.id, c1.id, c2.id, rival.id, rival_account.id, c3.id)


def test_the_overview_shows_own_accounts_wallets_limits_and_cards(signed_in: SignIn, fleet: Fleet) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    answer = client.get("/api/customer")
    assert answer.status_code == 200
    data = answer.json()
    assert (data["id"], data["name"], [a["id"] for a in data["accounts"]]) == \
        (fleet.customer, "ACME Haulage", [fleet.account])
    account = data["accounts"][0]
    wallets = {w["name"]: (w["unit"], w["balance"], w["available"]) for w in account["wallets"]}
    assert wallets == {"Fuel money": ("money", 120_00, 5120_00), "Diesel litres": ("volume", 0, 0)}
    limits = [(x["period"], x["unit"], x["maximum"]) for x in account["limits"]]
    assert limits == [("month", "volume", 2000_00)]
    assert [c["id"] for c in account["cards"]] == [fleet.truck, fleet.van]
    truck = account["cards"][0]
    assert (truck["masked"], truck["vehicle"], truck["status"]) == ("707700******0019", "AB12", "active")
    assert [(x["period"], x["maximum"], x["remaining"]) for x in truck["limits"]] == [("day", 150_00, 150_00)]
    html = client.get("/customer").text
    for text in ("ACME Haulage", "707700******0019", "707700******0027", "Fuel money", "5120.00", "AB12"):
        assert text in html
    every = answer.text + html
    assert all(number not in every for number in NUMBERS.values())
    assert "Rival" not in every and "707700******0035" not in every


def test_another_customers_card_or_account_is_not_found(signed_in: SignIn, fleet: Fleet,
                                                        web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    missing = 10_000
    for card in (fleet.other_card, missing):
        assert client.get(f"/api/customer/cards/{card}").status_code == 404
        assert client.get(f"/customer/cards/{card}").status_code == 404
        blocked = client.api("POST", f"/api/customer/cards/{card}/block", json={"reason": "mine now"})
        assert (blocked.status_code, blocked.json()) == (404, {"error": "no such card"})
        assert client.form(f"/customer/cards/{card}/block", {"reason": "mine now"}).status_code == 404
        limit = {"scope": "card", "scope_id": card, "period": "day", "unit": "money", "maximum": 1}
        assert client.api("PUT", "/api/customer/limits", json=limit).status_code == 404
        assert client.form("/customer/limits", {**limit, "maximum": "1.00"}).status_code == 404
    for account in (fleet.other_account, missing):
        assert client.get(f"/api/customer/accounts/{account}").status_code == 404
        assert client.get(f"/customer/accounts/{account}").status_code == 404
        limit = {"scope": "account", "scope_id": account, "period": "day", "unit": "money", "maximum": 1}
        assert client.api("PUT", "/api/customer/limits", json=limit).status_code == 404
    with web_db.sessions() as s:
        other = s.get(Card, fleet.other_card)
        assert other is not None and other.status == "active"
        assert s.scalars(select(Limit).where(Limit.scope_id == fleet.other_card,
                                             Limit.scope == "card")).all() == []
        changes = s.scalars(select(AuditEntry.action).where(AuditEntry.actor == f"web:{client.login}")).all()
        assert changes == ["web_sign_in"]


def test_block_a_card_at_once_audited_and_on_the_stop_list(signed_in: SignIn, fleet: Fleet,
                                                          web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    with web_db.sessions() as s:
        assert NUMBERS["van"] not in cards.stop_list_numbers(s, web_db.keys, utcnow())
    page = client.get(f"/customer/cards/{fleet.van}")
    assert page.status_code == 200 and 'id="block-form"' in page.text
    answer = client.form(f"/customer/cards/{fleet.van}/block", {"action": "lost", "reason": "driver lost it"})
    assert (answer.status_code, answer.headers["location"]) == (303, f"/customer/cards/{fleet.van}?done=lost")
    shown = client.get(answer.headers["location"]).text
    assert 'id="done"' in shown and "block-form" not in shown
    with web_db.sessions() as s:
        card = s.get(Card, fleet.van)
        assert card is not None and card.status == "lost"
        entry = s.scalars(select(AuditEntry).where(AuditEntry.subject == f"card:{fleet.van}",
                                                   AuditEntry.action == "card.lost")).one()
        assert (entry.actor, entry.reason) == (f"web:{client.login}", "driver lost it")
        assert NUMBERS["van"] in cards.stop_list_numbers(s, web_db.keys, utcnow())
    again = client.api("POST", f"/api/customer/cards/{fleet.van}/block", json={"reason": "again"})
    assert again.status_code == 400 and "final" in again.json()["error"]
    # the API: CSRF header needed, a reason needed, then the card is blocked
    assert client.post(f"/api/customer/cards/{fleet.truck}/block", json={"reason": "x"}).status_code == 403
    no_reason = client.api("POST", f"/api/customer/cards/{fleet.truck}/block", json={"reason": ""})
    assert no_reason.status_code == 422
    assert client.api("POST", f"/api/customer/cards/{fleet.truck}/withdraw",
                      json={"reason": "x"}).status_code == 422
    done = client.api("POST", f"/api/customer/cards/{fleet.truck}/block", json={"reason": "left the company"})
    assert done.status_code == 200 and done.json()["status"] == "blocked"


def test_set_a_limit_on_own_card_and_account(signed_in: SignIn, fleet: Fleet, web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    answer = client.form("/customer/limits", {"scope": "card", "scope_id": fleet.truck, "period": "day",
                                              "unit": "money", "maximum": "80,5", "reason": "new policy"})
    assert (answer.status_code, answer.headers["location"]) == \
        (303, f"/customer/cards/{fleet.truck}?done=limit")
    bad = client.form("/customer/limits", {"scope": "card", "scope_id": fleet.truck, "period": "day",
                                           "unit": "count", "maximum": "2.5"})
    assert bad.status_code == 400
    limit = {"scope": "account", "scope_id": fleet.account, "period": "week", "unit": "count", "maximum": 12}
    put = client.api("PUT", "/api/customer/limits", json=limit)
    assert put.status_code == 200
    assert put.json() == {"scope": "account", "scope_id": fleet.account, "period": "week", "unit": "count",
                          "maximum": 12, "used": 0, "remaining": 12}
    with web_db.sessions() as s:
        day = s.scalars(select(Limit).where(Limit.scope == "card", Limit.scope_id == fleet.truck)).one()
        assert (day.period, day.unit, day.maximum) == ("day", "money", 80_50)
        mine = (AuditEntry.actor == f"web:{client.login}") & (AuditEntry.action != "web_sign_in")
        actions = [(a.actor, a.action, a.subject)
                   for a in s.scalars(select(AuditEntry).where(mine).order_by(AuditEntry.id))]
        assert actions == [(f"web:{client.login}", "limit.set", f"card:{fleet.truck}"),
                           (f"web:{client.login}", "limit.set", f"account:{fleet.account}")]
    assert "80.50" in client.get(f"/customer/cards/{fleet.truck}").text


def test_the_months_statement_as_json_csv_and_pdf(signed_in: SignIn, fleet: Fleet) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    data = client.get("/api/customer/statement", params={"month": "2026-11"}).json()
    assert (data["start"], data["end"]) == ("2026-11-01", "2026-11-30")
    assert [(r["card"], r["held"]) for r in data["rows"]] == [
        ("707700******0019", False), ("707700******0027", False), ("707700******0027", True)]
    total = data["total"]
    assert (total["sales"], total["volume_cl"], total["amount_cents"]) == (2, 50_00, 82_95)
    page = client.get("/customer/statement?month=2026-11").text
    assert "82.95" in page and "<svg" in page and 'href="/customer/statement.pdf?month=2026-11"' in page
    got = client.get("/customer/statement.csv?month=2026-11")
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith("attachment;")
    records = list(csv.DictReader(io.StringIO(got.text)))
    assert [r["record"] for r in records].count("sale") == 3 and records[-1]["amount"] == "82.95"
    pdf = client.get("/api/customer/statement.pdf?month=2026-11")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "ACME Haulage" in text and "82.95" in text and "707700******0035" not in text
    assert all(number not in got.text + text for number in NUMBERS.values())
    paths = client.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/customer/statement.{kind}"]["get"]["responses"]["200"]["content"]) == \
        {"text/csv", "application/pdf"}
    assert {"/api/customer", "/api/customer/cards/{card_id}/{action}", "/api/customer/limits"} <= set(paths)
    assert client.get("/api/customer/statement?month=2026-13").status_code == 400
    assert client.get("/api/customer/statement?month=nov").status_code == 422
    assert client.get("/api/customer/statement", params={"start": "2026-01-01",
                                                         "end": "2027-06-01"}).status_code == 400


def test_pages_in_russian_and_spanish(signed_in: SignIn, fleet: Fleet) -> None:
    ru = signed_in("fleet", customer_id=fleet.customer, language="ru")
    assert "Мой автопарк" in ru.get("/customer").text
    assert "Заблокировать сейчас" in ru.get(f"/customer/cards/{fleet.truck}").text
    pdf = ru.get("/customer/statement.pdf?month=2026-11").content
    assert "Выписка: ACME Haulage" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    es = signed_in("fleet", customer_id=fleet.customer, language="es")
    assert "Extracto mensual" in es.get("/customer/statement?month=2026-11").text


def test_only_a_fleet_customer_with_a_customer(signed_in: SignIn, fleet: Fleet, web_db: WebDb) -> None:
    assert signed_in("operator").get("/api/customer").status_code == 403
    with web_db.sessions() as s:
        loyal = loyalty.create_account(s, "Ana", issued_on=utcnow().date(), actor="operator", now=utcnow())
        s.commit()
    holder = signed_in("cardholder", account_id=loyal.id)
    assert holder.get(f"/api/customer/cards/{fleet.truck}").status_code == 403
    assert signed_in("station", station_ids="ST-001").get("/customer").status_code == 403
    stranger = signed_in("fleet", customer_id=fleet.other_customer)
    assert stranger.get(f"/api/customer/cards/{fleet.truck}").status_code == 404
    assert [a["id"] for a in stranger.get("/api/customer").json()["accounts"]] == [fleet.other_account]
    assert WebClient(stranger.app).get("/api/customer").status_code == 401


def test_texts_built_from_a_status_a_period_or_a_unit_exist() -> None:
    statuses = ("new", "active", "temp_blocked", "blocked", "lost", "stolen", "expired", "replaced",
                "withdrawn")
    names = ([f"status_{x}" for x in statuses] + [f"period_{x}" for x in admin.PERIODS]
             + [f"{kind}_status_{x}" for kind in ("account", "wallet") for x in ("active", "closed")]
             + [f"unit_{x}" for x in admin.UNITS] + [f"mode_{x}" for x in admin.MODES]
             + [f"medium_{x}" for x in cards.MEDIA] + [f"action_{x}" for x in BLOCKING]
             + [f"done_{x}" for x in (*BLOCKING, "limit")])
    for lang in ("en", "ru", "es"):
        t = translator(lang)
        assert all(t(f"customer.{name}") for name in names)


def test_a_maximum_keyed_in() -> None:
    class Fake:
        t = translator("en")
    ctx: Any = Fake()
    assert [parse_maximum(ctx, text, "money") for text in ("80", "80.5", "80,50", " 1 000.05")] == \
        [80_00, 80_50, 80_50, 1000_05]
    assert parse_maximum(ctx, "12", "count") == 12
    for text, unit in (("1.234", "money"), ("-5", "volume"), ("2.5", "count"), ("", "money"),
                       ("1e3", "money")):
        with pytest.raises(BadInput):
            parse_maximum(ctx, text, unit)


def _put(client: WebClient, scope: str, scope_id: int, period: str, unit: str, maximum: int) -> Any:
    answer = client.api("PUT", "/api/customer/limits", json={"scope": scope, "scope_id": scope_id,
                                                             "period": period, "unit": unit,
                                                             "maximum": maximum})
    return answer.status_code, answer.json().get("error", answer.json().get("maximum"))


def _limit(db: WebDb, scope: str, scope_id: int, period: str, unit: str) -> int | None:
    with db.sessions() as s:
        return s.scalar(select(Limit.maximum).where(Limit.scope == scope, Limit.scope_id == scope_id,
                                                    Limit.period == period, Limit.unit == unit))


def test_an_account_limit_is_never_raised_by_the_customer(signed_in: SignIn, fleet: Fleet,
                                                          web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    account = ("account", fleet.account, "month", "volume")
    status, error = _put(client, *account, 2_000_000_000)
    assert status == 403 and "can only be lowered" in error and "2000.00" in error
    assert _put(client, *account, 2000_01)[0] == 403
    assert _put(client, *account, 2000_00) == (200, 2000_00)         # the same is no raise
    assert _put(client, *account, 1500_00) == (200, 1500_00)         # lowered
    assert _put(client, *account, 2000_00)[0] == 403                 # and not raised back
    assert _limit(web_db, *account) == 1500_00
    assert _put(client, "account", fleet.account, "day", "money", 300_00) == (200, 300_00)     # added
    assert _put(client, "account", fleet.account, "day", "money", 300_01)[0] == 403
    page = client.form("/customer/limits", {"scope": "account", "scope_id": fleet.account, "period": "month",
                                            "unit": "volume", "maximum": "1600"})
    assert page.status_code == 403 and "can only be lowered" in page.text
    ru = signed_in("fleet", customer_id=fleet.customer, language="ru")
    assert "можно только снизить" in _put(ru, *account, 1600_00)[1]
    with web_db.sessions() as s:
        sets = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "limit.set",
                                                         AuditEntry.actor == f"web:{client.login}")).all()
        assert len(sets) == 3


def test_a_card_limit_is_raised_only_up_to_the_accounts(signed_in: SignIn, fleet: Fleet,
                                                        web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    van = ("card", fleet.van, "month", "volume")                     # the account's is 2000.00 litres
    assert _put(client, *van, 5000_00) == (200, 5000_00)             # none before: added, whatever its size
    status, error = _put(client, *van, 5000_01)
    assert status == 403 and "up to the account's limit" in error and "5000.00" in error
    assert _put(client, *van, 1000_00) == (200, 1000_00)             # lowered
    assert _put(client, *van, 2000_00) == (200, 2000_00)             # raised up to the account's
    status, error = _put(client, *van, 2000_01)
    assert status == 403 and "at most 2000.00" in error
    assert _limit(web_db, *van) == 2000_00
    truck = ("card", fleet.truck, "day", "money")                    # 150.00; the account has no day money
    assert _put(client, *truck, 200_00)[0] == 403                    # the network's 150.00 is the ceiling
    assert _limit(web_db, *truck) == 150_00
    assert _put(client, "account", fleet.account, "day", "money", 250_00) == (200, 250_00)
    assert _put(client, *truck, 250_00) == (200, 250_00)
    assert _put(client, *truck, 250_01)[0] == 403
    assert _put(client, *truck, 0) == (200, 0)                       # lowered to nothing at all
    es = signed_in("fleet", customer_id=fleet.customer, language="es")
    assert "hasta el límite de la cuenta" in _put(es, *truck, 300_00)[1]


def test_a_maximum_too_large_says_so(signed_in: SignIn, fleet: Fleet, web_db: WebDb) -> None:
    client = signed_in("fleet", customer_id=fleet.customer)
    status, error = _put(client, "card", fleet.van, "day", "count", admin.MAX_AMOUNT + 1)
    assert status == 400 and error == f"The maximum is too large: a limit is at most {admin.MAX_AMOUNT}."
    status, error = _put(client, "card", fleet.van, "day", "money", admin.MAX_AMOUNT + 1)
    assert status == 400 and "at most 10000000000.00" in error
    assert _limit(web_db, "card", fleet.van, "day", "money") is None
