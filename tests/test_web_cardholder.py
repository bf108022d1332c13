"""The cardholder's side of the back office: the sign-up for a loyalty card (registry.web.signup) on a real
SQLite registry, and the cardholder's points page and API over the app (tests/web_client.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok
from registry.keys import RegistryKeys
from registry.loyalty import admin, points
from registry.models import AuditEntry, Card, LoyaltyMember, Station
from registry.web import auth, signup
from registry.web_models import WebUser
from tests.test_web_loyalty import quick_client
from tests.web_client import PASSWORD, WebClient, WebDb, new_user, web_db  # noqa: F401

NOW = dt.datetime(2026, 12, 2, 10, 0)
FORM = signup.SignUpForm("Ana  Pérez", " Ana@Example.org ", "correct horse battery", "es", True)
LOYAL_A, LOYAL_B = signup.card_number(lambda _: 111), signup.card_number(lambda _: 222)
Env = tuple[Session, RegistryKeys]


@pytest.fixture
def env(web_db: WebDb) -> Iterator[Env]:  # noqa: F811
    with web_db.sessions() as s:
        yield s, web_db.keys


def test_a_new_card_number_is_in_the_loyalty_range_and_luhn_valid() -> None:
    numbers = {signup.card_number() for _ in range(200)}
    assert len(numbers) == 200
    assert all(len(n) == 16 and n.startswith("707701") and luhn_ok(n) for n in numbers)


def test_sign_up_makes_the_account_its_active_card_and_a_cardholder(env: Env) -> None:
    s, keys = env
    done = signup.sign_up(s, keys, FORM, now=NOW, cheap=True)
    s.commit()
    assert done.login == "ana@example.org" and done.number not in repr(done)
    assert done.masked == done.number[:6] + "******" + done.number[-4:] and done.expiry == "3112"
    view = admin.show(s, done.account_id)
    assert (view.name, view.status, view.tier, view.balance) == ("Ana Pérez", "active", "base", 0)
    assert view.cards == ((view.cards[0][0], done.masked, "active"),)
    card = s.scalars(select(Card).where(Card.account_id == done.account_id)).one()
    assert card.token == keys.token(done.number) and done.number not in (card.number_sealed or "")
    member = s.get(LoyaltyMember, done.account_id)
    assert member is not None and member.issued_on == NOW.date()
    user = s.get(WebUser, done.user_id)
    assert user is not None
    assert (user.login, user.role, user.account_id, user.language) == (
        "ana@example.org", "cardholder", done.account_id, "es")
    assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash
    assert auth.sign_in(s, "ANA@example.org", "correct horse battery", now=NOW, tries=5,
                        lock_for=dt.timedelta(minutes=15)).id == user.id
    details = " ".join(f"{a.actor} {a.action} {a.detail}" for a in s.scalars(select(AuditEntry)))
    assert "web.signup" in details and done.number not in details and "correct horse" not in details


def test_the_same_e_mail_twice_is_refused_and_writes_nothing(env: Env) -> None:
    s, keys = env
    signup.sign_up(s, keys, FORM, now=NOW, cheap=True)
    s.commit()
    again = signup.SignUpForm("Someone Else", "ana@EXAMPLE.org", "another long password", "en", True)
    with pytest.raises(signup.SignUpError) as refused:
        signup.sign_up(s, keys, again, now=NOW, cheap=True)
    assert refused.value.code == "email_taken"
    s.rollback()
    assert len(s.scalars(select(WebUser)).all()) == 1
    assert len(s.scalars(select(Card)).all()) == 1


@pytest.mark.parametrize(("form", "code"), [
    (signup.SignUpForm("", "a@example.org", "long enough pw", "en", True), "name"),
    (signup.SignUpForm("A\x00B", "a@example.org", "long enough pw", "en", True), "name"),
    (signup.SignUpForm("Ana", "not-an-email", "long enough pw", "en", True), "email"),
    (signup.SignUpForm("Ana", "a@b", "long enough pw", "en", True), "email"),
    (signup.SignUpForm("Ana", "a@example.org", "short", "en", True), "password"),
    (signup.SignUpForm("Ana", "a@example.org", "1111111111", "en", True), "password"),
    (signup.SignUpForm("Ana", "a@example.org", "a@example.org", "en", True), "password"),
    (signup.SignUpForm("Ana", "a@example.org", "long enough pw", "de", True), "language"),
    (signup.SignUpForm("Ana", "a@example.org", "long enough pw", "en", False), "consent"),
])
def test_a_wrong_field_is_named(form: signup.SignUpForm, code: str) -> None:
    with pytest.raises(signup.SignUpError) as refused:
        signup.check_form(form)
    assert refused.value.code == code and "long enough pw" not in str(refused.value)


def test_a_number_already_issued_is_drawn_again(env: Env) -> None:
    s, keys = env
    draws = iter([7, 7, 8])
    first = signup.sign_up(s, keys, FORM, now=NOW, draw=lambda _: next(draws), cheap=True)
    other = signup.SignUpForm("Bo", "bo@example.org", "yet another password", "en", True)
    second = signup.sign_up(s, keys, other, now=NOW, draw=lambda _: next(draws), cheap=True)
    assert first.number == signup.card_number(lambda _: 7)
    assert second.number == signup.card_number(lambda _: 8)


# -- over the app --------------------------------------------------------------------------------------------

def _csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found[1]


def _loyalty(db: WebDb, name: str, number: str, awards: int = 0) -> int:
    """A loyalty account with an active card and `awards` earns of 10 points at station S1, a minute apart."""
    with db.sessions() as s:
        if s.get(Station, "S1") is None:
            s.add(Station(id="S1", name="Main Street"))
        account = admin.create_account(s, name, issued_on=NOW.date(), actor="ops", now=NOW)
        admin.add_card(s, db.keys, account.id, number, medium="chip", expiry="3012", actor="ops", now=NOW)
        wallet = points.points_wallet(s, account.id)
        for i in range(awards):
            points.award(s, wallet, 10 + i, key=f"earn:{name}:{i}", at=NOW + dt.timedelta(minutes=i),
                         station="S1", product_group="fuel")
        s.commit()
        return account.id


def test_the_cardholder_sees_their_balance_and_last_30_movements(web_db: WebDb) -> None:  # noqa: F811
    mine = _loyalty(web_db, "Mine", LOYAL_A, awards=35)
    other = _loyalty(web_db, "Other", LOYAL_B, awards=2)
    client = quick_client(web_db, "cardholder", account_id=mine)
    got = client.get("/api/cardholder/points").json()
    assert got["balance"] == sum(10 + i for i in range(35)) and got["pooled"] is False
    assert got["cards"] == [{"masked": "707701******" + LOYAL_A[-4:], "status": "active"}]
    assert len(got["movements"]) == 30
    newest = got["movements"][0]
    assert (newest["points"], newest["station"], newest["station_name"], newest["kind"]) == (
        44, "S1", "Main Street", "earn")
    assert (newest["date"], newest["time"]) == ("2026-12-02", "10:34:00")
    html = client.get("/me").text
    assert "Main Street" in html and "+44" in html and LOYAL_A not in html and LOYAL_B[-4:] not in html
    theirs = quick_client(web_db, "cardholder", account_id=other).get("/api/cardholder/points").json()
    assert theirs["balance"] == 21 and len(theirs["movements"]) == 2
    assert quick_client(web_db, "operator").get("/api/cardholder/points").status_code == 403
    assert quick_client(web_db, "fleet", customer_id=_customer(web_db)).get("/me").status_code == 403


def _customer(db: WebDb) -> int:
    from registry.fleet.admin import create_customer
    with db.sessions() as s:
        customer = create_customer(s, "Haulage Ltd", actor="ops", now=NOW)
        s.commit()
        return customer.id


def test_a_pooled_account_shows_no_points(web_db: WebDb) -> None:  # noqa: F811
    pool = _loyalty(web_db, "Pool", LOYAL_A, awards=1)
    member = _loyalty(web_db, "Member", LOYAL_B, awards=3)
    with web_db.sessions() as s:
        admin.set_pool(s, member, pool, actor="ops", now=NOW)
        s.commit()
    client = quick_client(web_db, "cardholder", account_id=member)
    got = client.get("/api/cardholder/points").json()
    assert (got["pooled"], got["balance"], got["movements"]) == (True, None, [])
    assert 'id="pooled"' in client.get("/me").text


def test_sign_up_in_the_browser_shows_the_number_once_then_masked(web_db: WebDb) -> None:  # noqa: F811
    client = WebClient(web_db.app)
    form = client.get("/signup?lang=ru")
    assert form.status_code == 200 and "Оформить карту лояльности" in form.text
    data = {"name": "Иван Петров", "email": "ivan@example.org", "password": "correct horse battery",
            "language": "ru", "consent": "yes"}
    done = client.post("/signup", data={**data, "csrf": _csrf_of(form.text)})
    assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
    number = re.search(r'id="card-number">([0-9 ]+)<', done.text)
    assert number is not None
    digits = number[1].replace(" ", "")
    assert len(digits) == 16 and digits.startswith("707701") and luhn_ok(digits)
    assert "пластиковая карта" in done.text.lower() and "correct horse" not in done.text
    me = client.get("/me")                        # signed in by the sign-up
    assert me.status_code == 200 and "707701******" + digits[-4:] in me.text and digits not in me.text
    assert "Мои баллы" in me.text
    with web_db.sessions() as s:
        user = s.scalars(select(WebUser).where(WebUser.login == "ivan@example.org")).one()
        assert (user.role, user.language) == ("cardholder", "ru")
        card = s.scalars(select(Card).where(Card.account_id == user.account_id)).one()
        assert card.token == web_db.keys.token(digits) and card.status == "active"


def test_sign_up_refuses_a_foreign_form_and_a_taken_e_mail(web_db: WebDb) -> None:  # noqa: F811
    client = WebClient(web_db.app)
    data = {"name": "Ana", "email": "ana@example.org", "password": "correct horse battery",
            "language": "es", "consent": "yes"}
    client.get("/signup")
    assert client.post("/signup", data={**data, "csrf": "forged"}).status_code == 403
    first = client.post("/signup", data={**data, "csrf": _csrf_of(client.get("/signup").text)})
    assert first.status_code == 200
    other = WebClient(web_db.app)
    again = other.post("/signup", data={**data, "email": "ANA@example.org",
                                        "csrf": _csrf_of(other.get("/signup").text)})
    assert again.status_code == 400 and "Ya existe una cuenta con este correo" in again.text
    assert "correct horse" not in again.text and 'value="ANA@example.org"' in again.text
    no_consent = other.post("/signup", data={**data, "email": "bo@example.org", "consent": "",
                                             "csrf": _csrf_of(other.get("/signup").text)})
    assert no_consent.status_code == 400 and "Acepte las condiciones" in no_consent.text
    with web_db.sessions() as s:
        assert len(s.scalars(select(WebUser)).all()) == 1


def test_sign_ups_from_one_address_are_limited(env: Env) -> None:
    s, keys = env
    for i in range(signup.RATE_PER_ADDRESS):
        form = signup.SignUpForm(f"P{i}", f"p{i}@example.org", "a long password", "en", True)
        signup.sign_up(s, keys, form, now=NOW, where="192.0.2.7", cheap=True)
    late = signup.SignUpForm("Late", "late@example.org", "a long password", "en", True)
    with pytest.raises(signup.SignUpError) as refused:
        signup.sign_up(s, keys, late, now=NOW, where="192.0.2.7", cheap=True)
    assert refused.value.code == "too_many"
    signup.sign_up(s, keys, late, now=NOW, where="198.51.100.1", cheap=True)
    assert signup.sign_up(s, keys, signup.SignUpForm("Later", "later@example.org", "a long password", "en",
                                                     True), now=NOW + signup.RATE_WINDOW, where="192.0.2.7",
                          cheap=True).login == "later@example.org"


def _form(i: int | str, email: str = "") -> signup.SignUpForm:
    return signup.SignUpForm(f"P{i}", email or f"p{i}@example.org", "a long password", "en", True)


def test_attempts_are_counted_before_the_work_and_refusals_too(env: Env) -> None:
    s, keys = env
    signup.sign_up(s, keys, _form(0), now=NOW, where="192.0.2.8", cheap=True)
    s.commit()
    for _ in range(signup.RATE_PER_ADDRESS):            # "taken" answers count as attempts
        with pytest.raises(signup.SignUpError) as taken:
            signup.sign_up(s, keys, _form(1, "p0@example.org"), now=NOW, where="192.0.2.9", cheap=True)
        assert taken.value.code == "email_taken"
        s.rollback()
    with pytest.raises(signup.SignUpError) as refused:
        signup.sign_up(s, keys, _form(1, "p0@example.org"), now=NOW, where="192.0.2.9", cheap=True)
    assert refused.value.code == "too_many"
    with pytest.raises(signup.SignUpError) as still:     # a new e-mail too: the address is limited
        signup.sign_up(s, keys, _form(2), now=NOW, where="192.0.2.9", cheap=True)
    assert still.value.code == "too_many"
    s.rollback()
    attempts = s.scalars(select(AuditEntry.subject).where(AuditEntry.action == signup.ATTEMPT)).all()
    assert sorted(attempts) == ["address:192.0.2.8"] + ["address:192.0.2.9"] * signup.RATE_PER_ADDRESS
    assert len(s.scalars(select(WebUser)).all()) == 1
    with pytest.raises(signup.SignUpError) as wrong:     # a form refused as malformed costs no attempt
        signup.sign_up(s, keys, signup.SignUpForm("Bo", "bo@example.org", "short", "en", True), now=NOW,
                       where="192.0.2.10")
    assert wrong.value.code == "password"
    assert not signup.rate_limited(s, "192.0.2.10", NOW)


def test_a_limited_address_does_not_use_up_the_network_wide_cap(env: Env,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    s, keys = env
    monkeypatch.setattr(signup, "RATE_ALL", signup.RATE_PER_ADDRESS + 2)
    for i in range(3 * signup.RATE_PER_ADDRESS):
        try:
            signup.sign_up(s, keys, _form(i), now=NOW, where="203.0.113.66", cheap=True)
            s.commit()
        except signup.SignUpError as refused:
            assert refused.code == "too_many"
    made = [signup.sign_up(s, keys, _form(f"b{i}"), now=NOW, where=f"198.51.100.{i}", cheap=True)
            for i in range(2)]
    assert len(made) == 2
    with pytest.raises(signup.SignUpError) as full:
        signup.sign_up(s, keys, _form("c"), now=NOW, where="198.51.100.9", cheap=True)
    assert full.value.code == "too_many"


def test_an_attempt_found_beyond_the_limit_after_its_write_is_refused(env: Env,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's attempts committed between this one's check and its write: the count after the
    write refuses it and marks it, so it counts toward nothing."""
    s, keys = env
    for i in range(signup.RATE_PER_ADDRESS):
        signup.sign_up(s, keys, _form(i), now=NOW, where="192.0.2.11", cheap=True)
        s.commit()
    monkeypatch.setattr(signup, "rate_limited", lambda *_: False)
    with pytest.raises(signup.SignUpError) as refused:
        signup.sign_up(s, keys, _form("late"), now=NOW, where="192.0.2.11", cheap=True)
    assert refused.value.code == "too_many"
    s.rollback()
    rows = s.scalars(select(AuditEntry.action).where(AuditEntry.subject == "address:192.0.2.11")).all()
    assert sorted(rows) == [signup.ATTEMPT] * signup.RATE_PER_ADDRESS + [signup.REFUSED]
    assert len(s.scalars(select(WebUser)).all()) == signup.RATE_PER_ADDRESS


def test_a_sign_up_never_takes_another_users_login(env: Env) -> None:
    s, keys = env
    operator = auth.add_user(s, "boss@example.org", PASSWORD, role="operator", actor="test", now=NOW,
                             cheap=True)
    s.commit()
    with pytest.raises(signup.SignUpError) as taken:
        signup.sign_up(s, keys, _form(1, "Boss@Example.org"), now=NOW, where="192.0.2.12", cheap=True)
    assert taken.value.code == "email_taken"
    assert str(taken.value).startswith("an account with this e-mail address exists already: sign in")
    s.rollback()
    assert [(u.id, u.role, u.account_id) for u in s.scalars(select(WebUser))] == [
        (operator.id, "operator", None)]


def _post_signup(db: WebDb, email: str) -> str:
    client = WebClient(db.app)
    data = {"name": "Ana", "email": email, "password": "correct horse battery", "language": "en",
            "consent": "yes", "csrf": _csrf_of(client.get("/signup").text)}
    answer = client.post("/signup", data=data)
    return "made" if answer.status_code == 200 else answer.text


def test_parallel_sign_ups_from_one_address_make_at_most_five(web_db: WebDb) -> None:  # noqa: F811
    with ThreadPoolExecutor(max_workers=15) as pool:
        answers = list(pool.map(lambda i: _post_signup(web_db, f"fast{i}@example.org"), range(15)))
    assert answers.count("made") == signup.RATE_PER_ADDRESS
    assert all("Too many sign-ups from here" in a for a in answers if a != "made")
    with web_db.sessions() as s:
        assert len(s.scalars(select(WebUser).where(WebUser.role == "cardholder")).all()) == 5
        assert len(s.scalars(select(Card)).all()) == 5


def test_the_sixth_taken_probe_in_an_hour_is_refused(web_db: WebDb) -> None:  # noqa: F811
    taken = new_user(web_db, "operator")
    answers = [_post_signup(web_db, taken) for _ in range(signup.RATE_PER_ADDRESS + 1)]
    assert all("An account with this e-mail address exists already" in a for a in answers[:-1])
    assert "Too many sign-ups from here" in answers[-1] and "exists already" not in answers[-1]
