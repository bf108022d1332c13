"""The back office in a real browser (headless Chromium, Selenium 4) over a demo-seeded database served by
uvicorn: each role signs in to its home page; wrong passwords and the lock; blocking a card; downloads of a
report and a statement as CSV and PDF. The next sale at the pump after a block is the e2e scenarios'."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from contracts.cards import mask_number
from registry.models import Card
from registry.web import demo
from registry.web.auth import add_user
from registry.web.deps import utcnow
from tests.web_browser import Browser, LiveWeb, browser, live_web, wait_for  # noqa: F401

pytestmark = pytest.mark.slow

HOMES = {"operator": "/", "station": "/", "fleet": "/customer", "cardholder": "/me"}


def card_id(live: LiveWeb, number: str) -> int:
    with live.site.sessions() as s:
        found = s.scalar(select(Card.id).where(Card.token == live.site.keys.token(number)))
    assert found is not None
    return found


def card_status(live: LiveWeb, card: int) -> str:
    with live.site.sessions() as s:
        row = s.get(Card, card)
        assert row is not None
        return row.status


def submit_confirmed(browser: Browser, button: str) -> None:  # noqa: F811
    """Click a button of a form with data-confirm and accept the browser's question."""
    browser.find(button).click()
    alert = wait_for(lambda: _alert(browser), 5, "the confirmation")
    alert.accept()


def _alert(browser: Browser) -> object | None:  # noqa: F811
    from selenium.common.exceptions import NoAlertPresentException
    try:
        return browser.driver.switch_to.alert
    except NoAlertPresentException:
        return None


@pytest.mark.parametrize("role", ["operator", "station", "fleet", "cardholder"])
def test_each_role_signs_in_to_its_home_page(browser: Browser, live_web: LiveWeb, role: str) -> None:  # noqa: F811
    login, password = live_web.login(role)
    browser.sign_in(login, password)
    wait_for(lambda: browser.all("#who"), what=f"{role}'s home page")
    assert browser.path().split("?")[0] == HOMES[role]
    assert login in browser.find("#who").text
    assert not browser.all("p.error")
    nav = {a.get_attribute("href").removeprefix(live_web.url) for a in browser.all("header nav a")}
    if role == "operator":
        assert {"/fleet/customers", "/network/stations", "/reports", "/audit"} <= nav
    elif role == "station":
        assert "/fleet/customers" not in nav and "/network/terminals" in nav
    elif role == "fleet":
        assert demo.CUSTOMER in browser.text()
        assert sum(masked in browser.text() for masked in map(mask_number, demo.FLEET_NUMBERS)) == 3
    else:
        assert mask_number(demo.LOYALTY_NUMBER) in browser.text()
    # a page of another role is refused, not shown
    browser.go("/users")
    assert ("/users" in browser.path() and "Audit" in browser.text()) == (role == "operator")


def test_wrong_password_shows_the_error_and_the_sixth_try_is_locked(browser: Browser,  # noqa: F811
                                                                     live_web: LiveWeb) -> None:  # noqa: F811
    login, password = "locked.out@demo.test", "the right password"
    with live_web.site.sessions() as s:
        add_user(s, login, password, role="operator", actor="test", now=utcnow(), cheap=True)
        s.commit()
    first = ""
    for _ in range(5):
        browser.sign_in(login, "not the password")
        message = wait_for(lambda: browser.all("#message"), what="the error").pop().text
        first = first or message
        assert message == first and browser.path().startswith("/login")
    browser.sign_in(login, password)                # right, but locked now
    assert wait_for(lambda: browser.all("#message"), what="the error").pop().text == first
    assert browser.path().startswith("/login") and not browser.all("#who")
    browser.go("/")
    assert browser.path().startswith("/login")


def test_the_fleet_customer_blocks_a_card_and_its_page_shows_it(browser: Browser,  # noqa: F811
                                                                 live_web: LiveWeb) -> None:  # noqa: F811
    card = card_id(live_web, demo.FLEET_NUMBERS[1])
    browser.sign_in(*live_web.login("fleet"))
    wait_for(lambda: browser.all("#who"))
    browser.go(f"/customer/cards/{card}")
    assert "active" in browser.find("#status").text.lower()
    browser.find("#block-form input[name=reason]").send_keys("lost by the driver")
    submit_confirmed(browser, "#block")
    wait_for(lambda: "done=" in browser.path(), what="the card page after the block")
    assert card_status(live_web, card) == "blocked"
    assert "active" not in browser.find("#status").text.lower()
    assert not browser.all("#block-form")
    assert demo.FLEET_NUMBERS[1] not in browser.driver.page_source


def test_the_operator_blocks_a_card_and_its_page_shows_it(browser: Browser,  # noqa: F811
                                                          live_web: LiveWeb) -> None:  # noqa: F811
    from selenium.webdriver.support.select import Select

    card = card_id(live_web, demo.FLEET_NUMBERS[2])
    browser.sign_in(*live_web.login("operator"))
    wait_for(lambda: browser.all("#who"))
    browser.go(f"/fleet/cards/{card}")
    assert browser.find("h1 .badge").get_attribute("class").split() == ["badge", "active"]
    Select(browser.find("#card-move select[name=action]")).select_by_value("block")
    browser.find("#card-move input[name=reason]").send_keys("reported lost on the phone")
    browser.find("#card-move button").click()
    if _alert(browser) is not None:
        browser.driver.switch_to.alert.accept()
    wait_for(lambda: card_status(live_web, card) != "active", what="the block")
    assert card_status(live_web, card) == "temp_blocked"       # "block" here is the reversible one
    browser.go(f"/fleet/cards/{card}")
    assert browser.find("h1 .badge").get_attribute("class").split() == ["badge", "temp_blocked"]
    assert demo.FLEET_NUMBERS[2] not in browser.driver.page_source


def test_the_fleet_customer_downloads_the_statement_as_csv_and_pdf(browser: Browser,  # noqa: F811
                                                                   live_web: LiveWeb) -> None:  # noqa: F811
    browser.sign_in(*live_web.login("fleet"))
    wait_for(lambda: browser.all("#who"))
    month = f"{dt.date.today() - dt.timedelta(days=7):%Y-%m}"     # the demo sales are of the last fortnight
    browser.go(f"/customer/statement?month={month}")
    assert browser.all("#sales"), "the statement shows the demo's fleet sales"
    sheet = browser.download("#csv", ".csv").read_bytes()
    pdf = browser.download("#pdf", ".pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    header = sheet.decode("utf-8-sig").splitlines()[0]
    assert len(header.split(";" if ";" in header else ",")) > 3
    assert not any(n.encode() in sheet for n in demo.FLEET_NUMBERS)


def test_a_report_is_run_and_downloaded_as_csv_and_pdf(browser: Browser,  # noqa: F811
                                                       live_web: LiveWeb) -> None:  # noqa: F811
    from selenium.webdriver.support.select import Select

    browser.sign_in(*live_web.login("operator"))
    wait_for(lambda: browser.all("#who"))
    today = dt.date.today()
    # the period of the demo's sales (the last fortnight), then the form run as a person would
    browser.go(f"/reports?start={today - dt.timedelta(days=20)}&end={today}")
    Select(browser.find("#report-form select[name=by]")).select_by_value("product")
    browser.find("#run-report").click()
    wait_for(lambda: "by=product" in browser.path(), what="the report grouped by product")
    header = [th.text for th in browser.all("#report-table tr:first-child th")]
    rows = browser.all("#report-table tr")[1:]
    assert len(rows) >= 3 and browser.all("#report-total")        # diesel, petrol95, adblue and a total
    assert {"Diesel", "Unleaded 95", "AdBlue"} <= {r.find_elements("css selector", "td, th")[0].text
                                                   for r in rows}
    assert browser.all("#report-chart svg")
    got = browser.download("#download-csv", ".csv").read_bytes().decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(got)))
    assert table[0] == header
    assert len(table) == len(rows) + 1
    assert browser.download("#download-pdf", ".pdf").read_bytes().startswith(b"%PDF")
