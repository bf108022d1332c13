"""The operators' loyalty back office over the app (tests/web_client.py) on a real SQLite registry: the
programme, rewards and stock, vouchers (codes answered once, never listed, logged or audited) and attendants
(a PIN or card number never answered); operators only; the pages in every language."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from contracts.cards import luhn_ok
from contracts.signing import pin_matches
from registry.models import Attendant, AuditEntry, Product, Station, Voucher
from registry.vouchers import code_digest, code_key
from registry.web.auth import add_user, new_session
from registry.web.deps import COOKIE, utcnow
from registry.web.errors import BadInput
from registry.web.pages_loyalty import shown, units
from tests.web_client import PASSWORD, WebClient, WebDb, web_db  # noqa: F401

CARD = "7077001000000019"
_LOGINS = itertools.count(1)


def quick_client(db: WebDb, role: str, **scope: Any) -> WebClient:
    """A client signed in as a new user of `role`, its session opened as the sign-in opens one after the
    password check (tests/web_client.py's signed_in goes through that check; a sign-in rehashes its cheap
    test hash at full argon2 cost, too slow to do in every test)."""
    login = f"h5-{role}{next(_LOGINS)}@example.test"
    with db.sessions() as s:
        user = add_user(s, login, PASSWORD, role=role, actor="test", now=utcnow(), cheap=True, **scope)
        opened = new_session(s, user, now=utcnow(), longest=dt.timedelta(hours=1))
        s.commit()
    client = WebClient(db.app)
    client.cookies.set(COOKIE, opened.cookie)
    client.csrf, client.login = opened.csrf, login
    return client


@pytest.fixture
def operator(web_db: WebDb) -> WebClient:  # noqa: F811
    with web_db.sessions() as s:
        s.add(Product(code="diesel", name="Diesel", code3="019"))
        s.add(Station(id="S1", name="Main Street"))
        s.commit()
    return quick_client(web_db, "operator")


def _audits(db: WebDb) -> str:
    with db.sessions() as s:
        return "\n".join(f"{a.actor} {a.action} {a.subject} {a.reason} {a.detail}"
                         for a in s.scalars(select(AuditEntry)))


def test_form_numbers_are_whole_units() -> None:
    assert (units("1.5", 3, "p"), units("1500.00", 2, "m"), units(" 40,5 ", 2, "l"), units("-3", 0, "d")) == (
        1500, 150000, 4050, -3)
    for bad in ("1.2345", "abc", "", "1e3"):
        with pytest.raises(BadInput):
            units(bad, 3, "points")
    assert (shown(1500, 3), shown(2000, 3), shown(5, 0)) == ("1.5", "2", "5")


def test_the_programme_is_changed_through_the_pages_and_read_by_the_api(web_db: WebDb,  # noqa: F811
                                                                       operator: WebClient) -> None:
    forms = [("/loyalty/rules", {"product": "*", "basis": "volume", "points": "1.5"}),
             ("/loyalty/promotions", {"name": "Double diesel", "position": "10", "product": "diesel",
                                      "starts_on": "2026-12-01", "ends_on": "2026-12-31",
                                      "multiplier_pct": "200", "stop": "yes"}),
             ("/loyalty/tiers", {"name": "base", "rank": "0", "multiplier_pct": "100", "min_spend": "0"}),
             ("/loyalty/tiers", {"name": "gold", "rank": "1", "multiplier_pct": "150",
                                 "min_spend": "1500.00"}),
             ("/loyalty/settings", {"key": "daily_cap_points", "value": "2500"})]
    for url, data in forms:
        answer = operator.form(url, data)
        assert (answer.status_code, answer.headers["location"]) == (303, "/loyalty"), answer.text
    got = operator.get("/api/loyalty/programme").json()
    assert [(r["product"], r["basis"], r["milli_points"]) for r in got["rules"]] == [("*", "volume", 1500)]
    [promo] = got["promotions"]
    assert (promo["name"], promo["multiplier_pct"], promo["stop"], promo["status"]) == (
        "Double diesel", 200, True, "active")
    assert [(t["name"], t["min_spend_cents"]) for t in got["tiers"]] == [("base", 0), ("gold", 150000)]
    assert {x["key"]: x["value"] for x in got["settings"]}["daily_cap_points"] == 2500
    rule_id, promo_id = got["rules"][0]["id"], promo["id"]
    assert operator.form(f"/loyalty/rules/{rule_id}/end", {"on": "2026-12-15"}).status_code == 303
    ended = operator.api("POST", f"/api/loyalty/promotions/{promo_id}/end", json={"on": "2026-12-20"}).json()
    assert (ended["ends_on"], ended["status"]) == ("2026-12-20", "ended")
    html = operator.get("/loyalty").text
    assert "Double diesel" in html and "1.5" in html and "1500.00" in html and "2026-12-15" in html
    trail = _audits(web_db)
    for action in ("loyalty.rule.add", "loyalty.promo.add", "loyalty.tier.set", "loyalty.setting",
                   "loyalty.rule.end", "loyalty.promo.end"):
        assert f"web:{operator.login} {action}" in trail
    refused = operator.form("/loyalty/tiers", {"name": "silver", "rank": "2", "multiplier_pct": "120",
                                               "min_spend": "10.00"})
    assert refused.status_code == 400 and "higher min spend" in refused.text


def test_rewards_and_stock(operator: WebClient) -> None:
    made = operator.api("POST", "/api/loyalty/rewards", json={"name": "Car wash", "points": 500}).json()
    rid = made["id"]
    assert operator.form(f"/loyalty/rewards/{rid}/price", {"points": "450"}).status_code == 303
    assert operator.form(f"/loyalty/rewards/{rid}/stock", {"station": "S1", "how": "set",
                                                           "amount": "10"}).status_code == 303
    after = operator.api("PUT", f"/api/loyalty/rewards/{rid}/stock/S1",
                         json={"delta": -3, "reason": "damaged"}).json()
    assert (after["points"], after["stock"]) == (450, {"S1": 7})
    too_many = operator.api("PUT", f"/api/loyalty/rewards/{rid}/stock/S1", json={"delta": -8})
    assert too_many.status_code == 400 and "fewer in stock" in too_many.json()["error"]
    nowhere = operator.api("PUT", f"/api/loyalty/rewards/{rid}/stock/NOPE", json={"quantity": 1})
    assert nowhere.status_code == 404
    assert operator.api("PUT", f"/api/loyalty/rewards/{rid}/stock/S1", json={}).status_code == 400
    assert operator.form(f"/loyalty/rewards/{rid}/withdraw", {"reason": "season over"}).status_code == 303
    [listed] = operator.get("/api/loyalty/rewards").json()
    assert listed["status"] == "withdrawn"
    assert "Car wash" in operator.get("/loyalty/rewards").text


def test_voucher_codes_are_answered_once_and_never_listed(web_db: WebDb,  # noqa: F811
                                                          operator: WebClient) -> None:
    expires_on = (utcnow().date() + dt.timedelta(days=180)).isoformat()
    page = operator.form("/loyalty/vouchers", {"product": "diesel", "litres": "40.5", "count": "2",
                                               "expires_on": expires_on, "batch": "XMAS"})
    assert page.status_code == 200
    codes = [c.replace(" ", "") for c in re.findall(r'class="code">([0-9 ]+)<', page.text)]
    assert len(codes) == 2 and all(len(c) == 19 and luhn_ok(c) for c in codes)
    answered = operator.api("POST", "/api/loyalty/vouchers", json={"product": "diesel", "volume_cl": 1000,
                                                                    "count": 1}).json()
    [api_code] = [v["code"] for v in answered["vouchers"]]
    key = code_key(web_db.keys)
    with web_db.sessions() as s:
        digests = {v.code_digest: v for v in s.scalars(select(Voucher))}
        assert all(code_digest(key, c) in digests for c in [*codes, api_code])
        assert digests[code_digest(key, codes[0])].volume_cl == 4050
    listing = operator.get("/loyalty/vouchers").text + operator.get("/api/loyalty/vouchers").text
    trail = _audits(web_db)
    for code in [*codes, api_code]:
        assert code not in listing and code not in trail and code[-4:] in listing
    first = operator.get("/api/loyalty/vouchers?batch=XMAS").json()[-1]
    void = f"/loyalty/vouchers/{first['id']}/void"
    assert operator.form(void, {"reason": ""}).status_code == 400
    assert operator.form(void, {"reason": "printed twice"}).status_code == 303
    assert operator.get("/api/loyalty/vouchers?status=void").json()[0]["id"] == first["id"]
    assert operator.form(void, {"reason": "again"}).status_code == 400


def test_vouchers_as_printable_sheets(operator: WebClient) -> None:
    sheets = operator.form("/loyalty/vouchers", {"product": "diesel", "litres": "20", "count": "2",
                                                 "output": "pdf"})
    assert sheets.status_code == 200 and sheets.headers["content-type"] == "application/pdf"
    assert sheets.headers["content-disposition"].startswith('attachment; filename="vouchers-')
    assert len(PdfReader(io.BytesIO(sheets.content)).pages) == 2


def test_attendants_pin_and_card_go_in_and_never_come_out(web_db: WebDb,  # noqa: F811
                                                          operator: WebClient) -> None:
    assert operator.form("/loyalty/attendants", {"attendant_id": "ann", "name": "Ann Attendant",
                                                 "stations": "S1"}).status_code == 303
    assert operator.form("/loyalty/attendants/ann/pin", {"pin": "4071", "again": "4072"}).status_code == 400
    weak = operator.form("/loyalty/attendants/ann/pin", {"pin": "1234", "again": "1234"})
    assert weak.status_code == 400 and "1234" not in weak.text
    assert operator.form("/loyalty/attendants/ann/pin", {"pin": "4071", "again": "4071"}).status_code == 303
    card = operator.form("/loyalty/attendants/ann/card", {"number": CARD, "medium": "chip"})
    assert card.status_code == 303
    [ann] = operator.get("/api/loyalty/attendants?station=S1").json()
    assert (ann["card"], ann["pin"], ann["status"], ann["stations"]) == (True, True, "active", "S1")
    with web_db.sessions() as s:
        row = s.get(Attendant, "ann")
        assert row is not None and pin_matches(row.pin_verifier, "4071")
        assert row.card_token == web_db.keys.token(CARD)
    seen = operator.get("/loyalty/attendants").text + operator.get("/api/loyalty/attendants").text
    trail = _audits(web_db)
    assert "4071" not in seen + trail and CARD not in seen + trail
    assert operator.form("/loyalty/attendants/ann/lock", {"reason": ""}).status_code == 400
    for action, state in (("lock", "locked"), ("unlock", "active"), ("withdraw", "withdrawn")):
        assert operator.form(f"/loyalty/attendants/ann/{action}", {"reason": "test"}).status_code == 303
        assert operator.get("/api/loyalty/attendants").json()[0]["status"] == state
    assert operator.form("/loyalty/attendants/ann/dance", {"reason": "x"}).status_code == 400
    assert f"web:{operator.login} attendant.withdraw attendant:ann test" in trail + _audits(web_db)


def test_only_operators_and_only_with_the_csrf_token(web_db: WebDb,  # noqa: F811
                                                     operator: WebClient) -> None:
    manager = quick_client(web_db, "station", station_ids="S1")
    for url in ("/api/loyalty/programme", "/api/loyalty/rewards", "/api/loyalty/vouchers",
                "/api/loyalty/attendants", "/loyalty", "/loyalty/vouchers", "/loyalty/attendants"):
        assert manager.get(url).status_code == 403, url
    assert manager.api("POST", "/api/loyalty/vouchers", json={"product": "diesel", "volume_cl": 100}
                       ).status_code == 403
    forged = operator.post("/loyalty/rules", data={"csrf": "x", "product": "*", "basis": "volume",
                                                   "points": "1"}, follow_redirects=False)
    assert forged.status_code == 403
    assert WebClient(web_db.app).get("/api/loyalty/programme").status_code == 401
    assert operator.get("/api/loyalty/programme").json()["rules"] == []


@pytest.mark.parametrize("lang", ["ru", "es"])
def test_the_pages_in_each_language(operator: WebClient, lang: str) -> None:
    operator.form("/loyalty/attendants", {"attendant_id": "bo", "name": "Bo"})
    operator.api("POST", "/api/loyalty/rewards", json={"name": "Coffee", "points": 50})
    operator.form("/loyalty/rules", {"product": "*", "basis": "money", "points": "1"})
    assert operator.form("/language", {"lang": lang, "back": "/loyalty"}).status_code == 303
    words = {"ru": "Программа лояльности", "es": "Programa de fidelización"}
    for url in ("/loyalty", "/loyalty/rewards", "/loyalty/vouchers", "/loyalty/attendants"):
        answer = operator.get(url)
        assert answer.status_code == 200 and f'lang="{lang}"' in answer.text, url
    assert words[lang] in operator.get("/loyalty").text
