"""The operators' fleet API and pages over the app on a real SQLite registry (tests/web_client.py): only
operators, every change audited with the web user, card numbers never answered, a form's one-time key
booking a top-up or correction once, the card life cycle, limits and windows, and CSV import and export."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from registry.models import Account, AuditEntry, Card
from tests.web_client import WebClient, WebDb

PAN = "7077001000000019"
PAN2 = "7077001000000027"
PAN3 = "7077001000000035"


def ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.headers.get("content-type", "").startswith("application/json") else answer


@pytest.fixture
def op(signed_in: Any) -> WebClient:
    client: WebClient = signed_in("operator")
    return client


def _account(op: WebClient) -> tuple[int, int]:
    customer = ok(op.api("POST", "/api/fleet/customers", json={"name": "ACME Haulage", "tax_id": "DE1"}))
    account = ok(op.api("POST", f"/api/fleet/customers/{customer['id']}/accounts",
                        json={"name": "Trucks", "prompts": "vehicle", "timezone": "Europe/Berlin"}))
    return customer["id"], account["id"]


def _audits(web_db: WebDb, action: str) -> list[AuditEntry]:
    with web_db.sessions() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.parametrize("role", ["fleet", "cardholder", "station"])
def test_only_operators(signed_in: Any, web_db: WebDb, op: WebClient, role: str) -> None:
    customer, account = _account(op)
    with web_db.sessions() as s:         # a cardholder's loyalty account, a manager's station
        from registry.loyalty.admin import create_account
        from registry.models import Station
        loyalty = create_account(s, "Ana", issued_on=dt.date(2026, 1, 1), actor="t",
                                 now=dt.datetime(2026, 1, 1))
        s.add(Station(id="ST-001", name="North"))
        s.commit()
        loyalty_id = loyalty.id
    scope = {"fleet": {"customer_id": customer}, "cardholder": {"account_id": loyalty_id},
             "station": {"station_ids": "ST-001"}}[role]
    other = signed_in(role, **scope)
    for url in ("/api/fleet/customers", f"/api/fleet/customers/{customer}", f"/api/fleet/accounts/{account}",
                "/api/fleet/export/customers.csv", "/fleet/customers", f"/fleet/accounts/{account}"):
        assert other.get(url).status_code == 403, url
    answer = other.api("POST", "/api/fleet/customers", json={"name": "Mine"})
    assert answer.status_code == 403
    assert other.form("/fleet/wallets/1/topup", {"amount": "5", "reason": "x"}).status_code == 403


def test_customers_accounts_and_their_audit(op: WebClient, web_db: WebDb) -> None:
    customer, account = _account(op)
    ok(op.api("POST", "/api/fleet/customers", json={"name": "Beta Transport", "kind": "individual"}))
    assert [c["name"] for c in ok(op.get("/api/fleet/customers", params={"q": "acme"}))] == ["ACME Haulage"]
    assert [c["id"] for c in ok(op.get("/api/fleet/customers", params={"q": "de1"}))] == [customer]
    edited = ok(op.api("PUT", f"/api/fleet/customers/{customer}", json={"name": "ACME Logistics",
                                                                         "tax_id": "DE2"}))
    assert (edited["name"], edited["tax_id"], edited["accounts"]) == ("ACME Logistics", "DE2", 1)
    view = ok(op.get(f"/api/fleet/customers/{customer}"))
    assert [a["id"] for a in view["accounts"]] == [account]
    assert ok(op.api("PUT", f"/api/fleet/customers/{customer}", json={"name": "\x07"}), 400)
    assert op.get("/api/fleet/customers/999").status_code == 404
    (edit,) = _audits(web_db, "customer.edit")
    assert edit.actor == f"web:{op.login}" and "ACME Logistics" in edit.detail
    assert _audits(web_db, "account.create")[0].actor == f"web:{op.login}"


def test_card_life_cycle_never_answers_the_number(op: WebClient, web_db: WebDb) -> None:
    _, account = _account(op)
    vehicle = ok(op.api("POST", f"/api/fleet/accounts/{account}/vehicles", json={"number": "b-xy 12"}))
    driver = ok(op.api("POST", f"/api/fleet/accounts/{account}/drivers",
                       json={"code": "0042", "name": "Dana"}))
    answer = op.api("POST", f"/api/fleet/accounts/{account}/cards",
                    json={"number": PAN, "expiry": "2912", "pin": "1234", "vehicle_id": vehicle["id"],
                          "driver_id": driver["id"], "activate": True})
    card = ok(answer)
    assert PAN not in answer.text and "1234" not in answer.text
    assert (card["masked"], card["status"], card["pin"], card["vehicle"], card["driver"]) == (
        "707700******0019", "active", True, "BXY12", "0042")
    again = op.api("POST", f"/api/fleet/accounts/{account}/cards", json={"number": PAN, "expiry": "2912"})
    assert again.status_code == 400 and "issued already" in again.text and PAN not in again.text
    bad = op.api("POST", f"/api/fleet/accounts/{account}/cards",
                 json={"number": PAN[:-1] + "8", "expiry": "2912"})
    assert bad.status_code == 400 and PAN[:-1] not in bad.text
    url = f"/api/fleet/cards/{card['id']}"
    assert ok(op.api("POST", url + "/block", json={"reason": "driver called"}))["status"] == "temp_blocked"
    assert ok(op.api("POST", url + "/unblock", json={"reason": "found it"}))["status"] == "active"
    assert op.api("POST", url + "/unblock", json={"reason": "again"}).status_code == 400
    assert op.api("POST", url + "/block", json={"reason": ""}).status_code == 400       # a reason is needed
    assert op.api("POST", url + "/explode", json={"reason": "x"}).status_code == 422
    assert ok(op.api("POST", url + "/lost", json={"reason": "lost at the depot"}))["status"] == "lost"
    new = ok(op.api("POST", url + "/reissue", json={"number": PAN2, "expiry": "3001", "reason": "replacement",
                                                    "activate": True}))
    assert (new["masked"], new["vehicle"], new["status"]) == ("707700******0027", "BXY12", "active")
    shown = ok(op.get(url))
    assert shown["card"]["replaced_by"] == new["id"] and shown["card"]["status"] == "lost"
    view = op.get(f"/api/fleet/accounts/{account}")
    assert [c["status"] for c in ok(view)["cards"]] == ["lost", "active"] and PAN not in view.text
    with web_db.sessions() as s:
        details = " ".join(f"{a.action} {a.actor} {a.detail}" for a in s.scalars(select(AuditEntry)))
    assert PAN not in details and PAN2 not in details and "1234" not in details
    assert {a.actor for a in _audits(web_db, "card.lost")} == {f"web:{op.login}"}


def test_money_books_once_per_key(op: WebClient, web_db: WebDb) -> None:
    _, account = _account(op)
    wallet = ok(op.api("POST", f"/api/fleet/accounts/{account}/wallets", json={"unit": "money"}))
    url = f"/api/fleet/wallets/{wallet['id']}"
    for _ in range(3):
        move = ok(op.api("POST", url + "/topup", json={"amount": 5000, "reason": "bank", "key": "PAY-1"}))
    assert move["balance_after"] == 5000
    other = op.api("POST", url + "/topup", json={"amount": 7000, "reason": "x", "key": "PAY-1"})
    assert other.status_code == 400
    for _ in range(2):
        ok(op.api("POST", url + "/correction", json={"amount": -1250, "reason": "fee", "key": "C-1"}))
    ok(op.api("POST", url + "/correction", json={"amount": 50, "reason": "no key"}))
    too_much = op.api("POST", url + "/correction", json={"amount": -10**6, "reason": "too much"})
    assert too_much.status_code == 400
    view = ok(op.get(f"/api/fleet/accounts/{account}"))
    assert view["wallets"][0]["balance"] == 3800
    assert [m["amount"] for m in view["movements"]] == [50, -1250, 5000]
    assert len(_audits(web_db, "wallet.topup")) == 1 and len(_audits(web_db, "wallet.correct")) == 2
    second = ok(op.api("POST", f"/api/fleet/accounts/{account}/wallets",
                       json={"unit": "volume", "mode": "postpaid", "credit_limit": 50000, "name": "Diesel"}))
    order = ok(op.api("PUT", f"/api/fleet/accounts/{account}/wallet-order",
                      json={"wallet_ids": [second["id"]]}))
    assert [w["id"] for w in order] == [second["id"], wallet["id"]]
    assert op.api("POST", url + "/close", json={"reason": "done"}).status_code == 400      # not empty


def test_limits_and_windows(op: WebClient) -> None:
    _, account = _account(op)
    card = ok(op.api("POST", f"/api/fleet/accounts/{account}/cards", json={"number": PAN, "expiry": "2912"}))
    for kind, ident in (("accounts", account), ("cards", card["id"])):
        ok(op.api("PUT", f"/api/fleet/{kind}/{ident}/limits",
                  json={"period": "day", "unit": "volume", "maximum": 8000, "reason": "policy"}))
        ok(op.api("POST", f"/api/fleet/{kind}/{ident}/windows",
                  json={"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "20:00"}))
    assert op.api("PUT", f"/api/fleet/cards/{card['id']}/limits",
                  json={"period": "fortnight", "unit": "volume", "maximum": 1}).status_code == 400
    assert op.api("POST", f"/api/fleet/cards/{card['id']}/windows",
                  json={"days": ["mon"], "start": "6", "end": "20:00"}).status_code == 400
    view = ok(op.get(f"/api/fleet/accounts/{account}"))
    assert {(x["scope"], x["maximum"], x["remaining"]) for x in view["limits"]} == {
        ("account", 8000, 8000), ("card", 8000, 8000)}
    assert view["windows"][0]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert ok(op.api("DELETE", f"/api/fleet/cards/{card['id']}/limits/day/volume")) == {"removed": True}
    assert ok(op.api("DELETE", f"/api/fleet/cards/{card['id']}/windows")) == {"removed": 1}
    shown = ok(op.get(f"/api/fleet/cards/{card['id']}"))
    assert shown["limits"] == [] and shown["windows"] == []
    assert op.api("DELETE", "/api/fleet/customers/1/windows").status_code == 422  # accounts, cards only


def test_a_loyalty_account_is_no_fleet_account(op: WebClient, web_db: WebDb) -> None:
    with web_db.sessions() as s:
        loyalty = Account(name="Points", kind="loyalty", status="active", timezone="UTC")
        s.add(loyalty)
        s.commit()
        ident = loyalty.id
    assert op.get(f"/api/fleet/accounts/{ident}").status_code == 404
    assert op.get(f"/fleet/accounts/{ident}").status_code == 404


def _form_key(html: str, wallet: int, kind: str) -> str:
    found = re.search(rf'name="key" value="(web-[^"]+-{kind}{wallet})"', html)
    assert found, html
    return found.group(1)


def test_the_pages_do_it_all_through_forms(op: WebClient, web_db: WebDb) -> None:
    answer = op.form("/fleet/customers", {"name": "Gamma GmbH", "kind": "company", "tax_id": "DE3"})
    assert answer.status_code == 303
    customer_url = answer.headers["location"]
    assert "Gamma GmbH" in op.get(customer_url).text
    answer = op.form(customer_url + "/accounts", {"name": "Vans", "timezone": "Europe/Madrid",
                                                  "prompts": ["odometer", "vehicle"]})
    account_url = answer.headers["location"]
    account = int(account_url.rsplit("/", 1)[1])
    op.form(account_url + "/vehicles", {"number": "M-1234"})
    op.form(account_url + "/wallets", {"unit": "money", "mode": "prepaid", "credit_limit": "0",
                                       "name": "Cash"})
    answer = op.form(account_url + "/cards", {"number": PAN3, "expiry": "2912", "medium": "stripe",
                                              "pin": "4321", "activate": "1"})
    assert answer.status_code == 303 and PAN3 not in answer.text
    card_url = answer.headers["location"]
    page = op.get(card_url)
    assert "707700******0035" in page.text and PAN3 not in page.text and "4321" not in page.text
    html = op.get(account_url).text
    assert "Vans" in html and "M1234" in html and PAN3 not in html
    wallet = int(re.search(r'id="wallet-(\d+)"', html).group(1))       # type: ignore[union-attr]
    key = _form_key(html, wallet, "t")
    for _ in range(2):                                                  # a double submit
        assert op.form(f"/fleet/wallets/{wallet}/topup", {"amount": "150,50", "reason": "cash", "key": key}
                       ).status_code == 303
    fix = _form_key(html, wallet, "c")
    for _ in range(2):
        op.form(f"/fleet/wallets/{wallet}/correction", {"amount": "-0.50", "reason": "fee", "key": fix})
    assert ok(op.get(f"/api/fleet/accounts/{account}"))["wallets"][0]["balance"] == 15000
    assert _form_key(op.get(account_url).text, wallet, "t") != key      # a fresh key for the next top-up
    op.form(account_url + "/limits", {"period": "month", "unit": "volume", "maximum": "500,5"})
    op.form(card_url + "/limits", {"period": "day", "unit": "count", "maximum": "3"})
    for typed in ("3.0", "3,0", "three"):                                # a count is a whole number
        assert op.form(card_url + "/limits", {"period": "week", "unit": "count", "maximum": typed}
                       ).status_code == 400, typed
    op.form(card_url + "/limits", {"period": "month", "unit": "count", "maximum": "1 000"})
    op.form(card_url + "/windows", {"days": ["sat", "sun"], "start": "08:00", "end": "12:00"})
    view = ok(op.get(f"/api/fleet/accounts/{account}"))
    limits = {(x["scope"], x["unit"]): x["maximum"] for x in view["limits"]}
    counts = sorted(x["maximum"] for x in view["limits"] if x["unit"] == "count")
    assert counts == [3, 1000] and limits[("account", "volume")] == 50050
    assert op.form(card_url + "/move", {"action": "block", "reason": "check"}).status_code == 303
    assert "badge temp_blocked" in op.get(card_url).text
    assert 'value="unblock"' in op.get(card_url).text and 'value="activate"' not in op.get(card_url).text
    refused = op.form(card_url + "/move", {"action": "activate", "reason": "x"})
    assert refused.status_code == 400 and "cannot be moved" in refused.text
    answer = op.form(card_url + "/reissue", {"number": PAN, "expiry": "3012", "reason": "worn"})
    assert answer.status_code == 303 and PAN not in op.get(answer.headers["location"]).text


@pytest.mark.parametrize("lang", ["en", "ru", "es"])
def test_every_page_renders_in_each_language(signed_in: Any, lang: str) -> None:
    op = signed_in("operator", language=lang)
    customer, account = _account(op)
    card = ok(op.api("POST", f"/api/fleet/accounts/{account}/cards", json={"number": PAN, "expiry": "2912"}))
    ok(op.api("POST", f"/api/fleet/accounts/{account}/wallets", json={"unit": "volume"}))
    ok(op.api("PUT", f"/api/fleet/accounts/{account}/limits", json={"period": "week", "unit": "money",
                                                                     "maximum": 100}))
    for url in ("/fleet/customers", f"/fleet/customers/{customer}", f"/fleet/accounts/{account}",
                f"/fleet/cards/{card['id']}", "/fleet/import", "/fleet/customers?q=acme"):
        answer = op.get(url)
        assert answer.status_code == 200, (url, answer.text[:300])
        assert f'<html lang="{lang}">' in answer.text
    assert "Клиенты" in op.get("/fleet/customers").text if lang == "ru" else True


def test_csv_export_and_import_through_the_pages(op: WebClient, web_db: WebDb) -> None:
    customer, account = _account(op)
    ok(op.api("POST", f"/api/fleet/accounts/{account}/cards", json={"number": PAN, "expiry": "2912"}))
    exported = op.get("/fleet/export/cards.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith(b"\xef\xbb\xbfid;number;") and PAN.encode() not in exported.content
    assert b"707700******0019" in exported.content
    assert op.get(f"/fleet/export/cards.csv?customer_id={customer}").content == exported.content
    assert op.get("/fleet/export/cards.csv?customer_id=999").status_code == 404
    bad = f"\ufeffnumber;expiry;account\r\n{PAN2};12/29;{account}\r\n{PAN};12/29;{account}\r\n".encode()
    answer = op.form("/fleet/import/cards", files={"file": ("cards.csv", bad, "text/csv")})
    assert answer.status_code == 400 and 'id="import-errors"' in answer.text
    assert "<td>3</td><td>number</td>" in answer.text and PAN not in answer.text and PAN2 not in answer.text
    with web_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Card)) == 1             # nothing half-imported
    good = f"\ufeffnumber;expiry;account;status\r\n{PAN2};12/29;{account};active\r\n".encode()
    answer = op.form("/fleet/import/cards", files={"file": ("cards.csv", good, "text/csv")})
    assert answer.status_code == 200 and 'id="import-done"' in answer.text and PAN2 not in answer.text
    api = op.api("POST", "/api/fleet/import/customers",
                 files={"file": ("c.csv", b"name;tax_id\r\nDelta;X9\r\n", "text/csv")})
    assert ok(api)["created"] and ok(api)["errors"] == []
    assert any(c["name"] == "Delta" for c in ok(op.get("/api/fleet/customers")))
