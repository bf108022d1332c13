"""Signing in to the back office: argon2 hashes, sessions, CSRF, lock-out after wrong tries, idle expiry,
no open redirect, the audit of every sign-in; roles see only their pages."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from sqlalchemy import select

from registry.fleet_models import AuditEntry, Customer
from registry.models import Station
from registry.web.auth import add_user, hash_password
from registry.web_models import WebSession, WebUser
from tests.web_client import PASSWORD, WebClient, WebDb, new_user


def _login_form(c: WebClient, lang: str = "") -> str:
    page = c.get("/login" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def _sign_in(c: WebClient, login: str, password: str, *, nxt: str = "") -> object:
    token = _login_form(c)
    return c.post("/login", data={"login": login, "password": password, "csrf": token, "next": nxt},
                  follow_redirects=False)


def test_passwords_are_argon2id_at_full_cost_outside_tests_never_the_password() -> None:
    from registry.web import auth
    stored = auth._FULL.hash("a long enough secret")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and "a long enough secret" not in stored
    assert hash_password("a long enough secret", cheap=True).startswith("$argon2id$")


def test_a_page_without_a_session_goes_to_sign_in_and_the_api_answers_401(web_db: WebDb) -> None:
    c = WebClient(web_db.app)
    page = c.get("/users", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/users"
    assert c.get("/api/users").status_code == 401


def test_sign_in_opens_a_session_kept_only_as_a_hash(web_db: WebDb) -> None:
    login = new_user(web_db, "operator")
    c = WebClient(web_db.app)
    answer = _sign_in(c, login, PASSWORD, nxt="/audit")
    assert answer.status_code == 303 and answer.headers["location"] == "/audit"
    cookie = c.cookies.get("fc_session")
    assert cookie
    with web_db.sessions() as s:
        hashes = list(s.scalars(select(WebSession.token_hash)))
    assert cookie not in hashes and len(hashes) == 1
    assert c.get("/").status_code == 200
    assert "Welcome" in c.get("/").text


def test_after_sign_in_only_a_path_of_this_site(web_db: WebDb) -> None:
    login = new_user(web_db, "operator")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        c = WebClient(web_db.app)
        answer = _sign_in(c, login, PASSWORD, nxt=target)
        assert answer.headers["location"] == "/", target


def test_the_sign_in_form_needs_its_own_token(web_db: WebDb) -> None:
    login = new_user(web_db, "operator")
    c = WebClient(web_db.app)
    answer = c.post("/login", data={"login": login, "password": PASSWORD, "csrf": "forged"},
                    follow_redirects=False)
    assert answer.status_code == 403 and "fc_session" not in c.cookies


def test_wrong_tries_lock_the_account_and_are_audited(web_db: WebDb) -> None:
    login = new_user(web_db, "operator")
    c = WebClient(web_db.app)
    for _ in range(5):
        answer = _sign_in(c, login, "wrong password!")
        assert answer.status_code == 401
        assert "Wrong login or password" in answer.text
    locked = _sign_in(c, login, PASSWORD)          # the right password, but locked now
    assert locked.status_code == 401 and "fc_session" not in c.cookies
    unknown = _sign_in(c, "nobody@example.test", PASSWORD)
    assert unknown.status_code == 401              # the same answer as a known login
    with web_db.sessions() as s:
        user = s.scalar(select(WebUser).where(WebUser.login == login))
        assert user is not None and user.locked_until is not None
        rows = s.scalars(select(AuditEntry).where(AuditEntry.subject == f"web_user:{user.id}"))
        actions = [a.action for a in rows]
        user.locked_until = dt.datetime(2000, 1, 1)
        s.commit()
    assert actions.count("web_sign_in_failed") == 5 and "web_user_locked" in actions
    assert "web_sign_in_locked" in actions
    assert _sign_in(c, login, PASSWORD).status_code == 303     # the lock has run out


def test_a_change_without_the_session_csrf_token_is_refused(signed_in: Callable[..., WebClient],
                                                           web_db: WebDb) -> None:
    op = signed_in("operator")
    other = new_user(web_db, "operator")
    with web_db.sessions() as s:
        uid = s.scalar(select(WebUser.id).where(WebUser.login == other))
    assert op.post(f"/users/{uid}/disable", data={"csrf": "forged"}).status_code == 403
    assert op.post(f"/api/users/{uid}/disable").status_code == 403          # no header
    assert op.api("POST", f"/api/users/{uid}/disable").json()["disabled"] is True


def test_a_disabled_user_is_signed_out_at_once(signed_in: Callable[..., WebClient], web_db: WebDb) -> None:
    op, victim = signed_in("operator"), signed_in("operator")
    with web_db.sessions() as s:
        uid = s.scalar(select(WebUser.id).where(WebUser.login == victim.login))
    assert victim.get("/api/me").status_code == 200
    op.api("POST", f"/api/users/{uid}/disable")
    assert victim.get("/api/me").status_code == 401


def test_an_idle_session_ends(signed_in: Callable[..., WebClient], web_db: WebDb) -> None:
    c = signed_in("operator")
    with web_db.sessions() as s:
        for row in s.scalars(select(WebSession)):
            row.seen_at -= dt.timedelta(hours=1)
        s.commit()
    assert c.get("/api/me").status_code == 401


def test_sign_out_ends_the_session(signed_in: Callable[..., WebClient]) -> None:
    c = signed_in("operator")
    assert c.form("/logout").status_code == 303
    assert c.get("/api/me").status_code == 401


@pytest.mark.parametrize("role", ["station", "fleet", "cardholder"])
def test_only_operators_see_users_and_the_audit(signed_in: Callable[..., WebClient], web_db: WebDb,
                                                role: str) -> None:
    with web_db.sessions() as s:
        customer = Customer(name="Haulage Ltd")
        s.add_all([customer, Station(id="S1", name="North")])
        s.flush()
        from registry.loyalty.admin import create_account
        account = create_account(s, "Ana", issued_on=dt.date(2026, 1, 1), actor="test",
                                 now=dt.datetime(2026, 1, 1))
        s.commit()
        scope = {"station": {"station_ids": "S1"}, "fleet": {"customer_id": customer.id},
                 "cardholder": {"account_id": account.id}}[role]
    c = signed_in(role, **scope)
    assert c.get("/api/users").status_code == 403
    assert c.get("/api/audit").status_code == 403
    assert c.get("/users").status_code == 403


def test_a_user_needs_a_scope_for_their_role(web_db: WebDb) -> None:
    from registry.web.errors import BadInput
    with web_db.sessions() as s:
        for role in ("station", "fleet", "cardholder"):
            with pytest.raises(BadInput):
                add_user(s, f"x-{role}", PASSWORD, role=role, actor="t", now=dt.datetime(2026, 1, 1),
                         cheap=True)


def test_pages_carry_the_security_headers(web_db: WebDb) -> None:
    answer = WebClient(web_db.app).get("/login")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    set_cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie


def test_the_language_is_the_users_own(signed_in: Callable[..., WebClient]) -> None:
    c = signed_in("operator")
    assert c.form("/language", {"lang": "ru", "back": "/"}).status_code == 303
    assert "Добро пожаловать" in c.get("/").text
    assert "Iniciar sesión" in WebClient(c.app).get("/login?lang=es").text


def test_the_api_is_described_by_openapi(web_db: WebDb) -> None:
    spec = WebClient(web_db.app).get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/me" in spec["paths"]


def test_wrong_passwords_sent_at_once_all_count_and_lock(web_db: WebDb) -> None:
    import threading
    login = new_user(web_db, "operator")
    answers: list[int] = []
    start = threading.Barrier(12)

    def guess() -> None:
        c = WebClient(web_db.app)
        start.wait()
        answer = c.post("/api/session", json={"login": login, "password": "not the password"})
        answers.append(answer.status_code)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [401] * 12
    with web_db.sessions() as s:
        user = s.scalar(select(WebUser).where(WebUser.login == login))
        assert user is not None and user.locked_until is not None
        locks = s.scalars(select(AuditEntry).where(AuditEntry.subject == f"web_user:{user.id}",
                                                   AuditEntry.action == "web_user_locked")).all()
    assert len(locks) >= 1
    right = WebClient(web_db.app).post("/api/session", json={"login": login, "password": PASSWORD})
    assert right.status_code == 401                     # locked, the right password or not


def test_a_user_changes_their_password_and_every_session_ends(signed_in: Callable[..., WebClient],
                                                              web_db: WebDb) -> None:
    c = signed_in("operator")
    other_browser = WebClient(c.app)
    new = "a brand new secret"
    opened = other_browser.post("/api/session", json={"login": c.login, "password": PASSWORD})
    assert opened.status_code == 200
    wrong = c.form("/password", {"current": "not it at all", "new": new, "again": new})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    assert c.form("/password", {"current": PASSWORD, "new": "a brand new secret",
                                "again": "a brand new secret"}).status_code == 303
    assert c.get("/api/me").status_code == 401 and other_browser.get("/api/me").status_code == 401
    fresh = WebClient(c.app)
    assert fresh.post("/api/session", json={"login": c.login, "password": PASSWORD}).status_code == 401
    assert fresh.post("/api/session", json={"login": c.login, "password": new}).status_code == 200


def test_an_operator_sets_another_users_password(signed_in: Callable[..., WebClient], web_db: WebDb) -> None:
    op, victim = signed_in("operator"), signed_in("operator")
    with web_db.sessions() as s:
        uid = s.scalar(select(WebUser.id).where(WebUser.login == victim.login))
    assert op.form(f"/users/{uid}/password", {"password": "reset by the desk"}).status_code == 303
    assert victim.get("/api/me").status_code == 401
    again = WebClient(op.app).post("/api/session",
                                   json={"login": victim.login, "password": "reset by the desk"})
    assert again.status_code == 200


def test_an_error_page_is_in_the_users_language(signed_in: Callable[..., WebClient]) -> None:
    c = signed_in("operator", language="ru")
    refused = c.form("/users/999999/unlock")
    assert refused.status_code == 404 and "Не найдено" in refused.text


def test_a_form_too_long_for_its_model_is_a_400_not_a_500(signed_in: Callable[..., WebClient]) -> None:
    op = signed_in("operator")
    answer = op.form("/network/stations", {"id": "x" * 300, "name": "North"})
    assert answer.status_code == 422 and "at most 64 characters" in answer.text
    assert "x" * 300 not in answer.text                      # what was typed is not echoed


def test_logins_and_station_lists_fit_what_the_audit_and_the_table_keep(web_db: WebDb) -> None:
    from registry.web.errors import BadInput
    now = dt.datetime(2026, 1, 1)
    with web_db.sessions() as s:
        s.add(Station(id="S1", name="North"))
        s.flush()
        with pytest.raises(BadInput, match="up to 60"):
            add_user(s, "a" * 61 + "@x.test", PASSWORD, role="operator", actor="t", now=now, cheap=True)
        user = add_user(s, "m@x.test", PASSWORD, role="station", station_ids="S1, S1,S1", actor="t", now=now,
                        cheap=True)
        assert user.station_ids == "S1"
        with pytest.raises(BadInput, match="too many stations"):
            many = ",".join(f"S{i:04}" for i in range(300))
            add_user(s, "n@x.test", PASSWORD, role="station", station_ids=many, actor="t", now=now,
                     cheap=True)
