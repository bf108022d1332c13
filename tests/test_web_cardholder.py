"""The cardholder's side of the back office: the sign-up for a loyalty card (registry.web.signup) on a real
SQLite registry, and the cardholder's points page and API over the app (tests/web_client.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok
from registry.keys import RegistryKeys
from registry.loyalty import admin
from registry.models import AuditEntry, Card, LoyaltyMember
from registry.web import auth, signup
from registry.web_models import WebUser
from tests.web_client import WebDb, signed_in, web_db  # noqa: F401

NOW = dt.datetime(2026, 12, 2, 10, 0)
FORM = signup.SignUpForm("Ana  Pérez", " Ana@Example.org ", "correct horse battery", "es", True)
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
