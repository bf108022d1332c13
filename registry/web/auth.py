"""Web users, passwords and sessions.

Passwords are argon2id (argon2-cffi's defaults, RFC 9106's second recommended option scaled down: 64 MiB,
3 passes). A session is a random 256-bit cookie; the database keeps its SHA-256 only, with its own CSRF
token. After `tries` wrong passwords in a row an account is locked for `lock_for`; an unknown login costs
the same hash as a known one, and both answer the same. Every sign-in, failure and lock is audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from registry.fleet.admin import audit
from registry.fleet_models import Account, Customer
from registry.models import Station
from registry.web.errors import BadInput
from registry.web_models import WebSession, WebUser

__all__ = [
    "LANGUAGES",
    "MAX_LOGIN",
    "ROLES",
    "VERIFYING",
    "Opened",
    "SignInRefused",
    "add_user",
    "cheap_hashes_for_tests",
    "check_password_rule",
    "end_session",
    "hash_password",
    "new_session",
    "session_of",
    "set_password",
    "sign_in",
    "verify_password",
]

ROLES = ("operator", "station", "fleet", "cardholder")
# the audit keeps "web:<login>" as who did a change, in 64 characters (AuditEntry.actor): a login fits whole
MAX_LOGIN = 60
LANGUAGES = ("en", "ru", "es")
_FULL = PasswordHasher()
# tests make many users: the same algorithm at a lower cost (a verify reads the cost from the hash)
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
_HASHER = _FULL
_DUMMY = _HASHER.hash(secrets.token_hex(16))


def cheap_hashes_for_tests() -> None:
    """New hashes, and the rehash on sign-in, at the cheap cost: for test processes only."""
    global _HASHER, _DUMMY
    _HASHER, _DUMMY = _CHEAP, _CHEAP.hash(secrets.token_hex(16))


class SignInRefused(BadInput):
    """Wrong login or password, or a locked or disabled account: one message for all (no login oracle)."""

    def __init__(self) -> None:
        super().__init__("wrong login or password, or the account is locked")


def hash_password(password: str, *, cheap: bool = False) -> str:
    return (_CHEAP if cheap else _HASHER).hash(password)


def check_password_rule(password: str) -> str:
    if len(password) < 10 or len(password) > 200:
        raise BadInput("a password has 10 to 200 characters")
    return password


def add_user(s: Session, login: str, password: str, *, role: str, actor: str, now: dt.datetime,
             name: str = "", station_ids: str = "", customer_id: int | None = None,
             account_id: int | None = None, language: str = "en", cheap: bool = False) -> WebUser:
    login = login.strip().lower()
    if not login or len(login) > MAX_LOGIN or any(c.isspace() for c in login):
        raise BadInput(f"a login is one word of up to {MAX_LOGIN} characters")
    stations = list(dict.fromkeys(x.strip() for x in station_ids.split(",") if x.strip()))
    if len(",".join(stations)) > 1000:
        raise BadInput("too many stations for one manager: give them fewer, or an operator's sign-in")
    if role not in ROLES:
        raise BadInput(f"a role is one of {', '.join(ROLES)}")
    _check_scope(s, role, stations, customer_id, account_id)
    if language not in LANGUAGES:
        raise BadInput(f"a language is one of {', '.join(LANGUAGES)}")
    need = {"station": bool(stations), "fleet": customer_id is not None,
            "cardholder": account_id is not None, "operator": True}
    if not need[role]:
        raise BadInput(f"a {role} user needs what they may see (stations, customer or account)")
    if s.scalar(select(WebUser.id).where(WebUser.login == login)) is not None:
        raise BadInput("that login is taken")
    user = WebUser(login=login, name=name.strip()[:200], role=role,
                   station_ids=",".join(stations),
                   customer_id=customer_id if role == "fleet" else None,
                   account_id=account_id if role == "cardholder" else None, language=language,
                   password_hash=hash_password(check_password_rule(password), cheap=cheap), created_at=now)
    s.add(user)
    s.flush()
    audit(s, actor=actor, action="web_user_add", subject=f"web_user:{user.id}", now=now,
          role=role, login=login)
    return user


def _check_scope(s: Session, role: str, stations: list[str], customer_id: int | None,
                 account_id: int | None) -> None:
    """What a user may see must exist: their stations, their fleet customer, their card account."""
    if role == "station":
        for sid in stations:
            if s.get(Station, sid) is None:
                raise BadInput(f"no station {sid[:64]}")
    if role == "fleet" and customer_id is not None and s.get(Customer, customer_id) is None:
        raise BadInput(f"no customer {customer_id}")
    if role == "cardholder" and account_id is not None:
        account = s.get(Account, account_id)
        if account is None or account.kind not in ("loyalty", "prepaid", "gift"):
            raise BadInput(f"no loyalty, prepaid or gift account {account_id}")


def set_password(s: Session, user: WebUser, password: str, *, actor: str, now: dt.datetime) -> None:
    user.password_hash = hash_password(check_password_rule(password))
    user.failed_tries, user.locked_until = 0, None
    s.execute(delete(WebSession).where(WebSession.user_id == user.id))      # every browser signs in again
    audit(s, actor=actor, action="web_password", subject=f"web_user:{user.id}", now=now)


# at most this many argon2 verifications at once (64 MiB each): a burst of sign-ins waits its turn instead
# of taking the memory, and a burst of wrong passwords meets the lock (the caller holds it while it checks
# and commits, so each try reads the count the last one left)
VERIFYING = threading.BoundedSemaphore(2)


def verify_password(stored: str, password: str) -> bool:
    return _verify(stored, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sign_in(s: Session, login: str, password: str, *, now: dt.datetime, tries: int,
            lock_for: dt.timedelta, where: str = "") -> WebUser:
    """The user, or SignInRefused (after counting the try). The caller commits either way."""
    user = s.scalar(select(WebUser).where(WebUser.login == login.strip().lower()))
    if user is None:
        _verify(_DUMMY, password)                  # the same time as a known login
        audit(s, actor="web:?", action="web_sign_in_failed", subject="web_user:?", now=now,
              where=where)
        raise SignInRefused
    subject = f"web_user:{user.id}"
    if user.disabled or (user.locked_until is not None and user.locked_until > now):
        _verify(_DUMMY, password)
        audit(s, actor=f"web:{user.login}", action="web_sign_in_locked", subject=subject, now=now,
              where=where)
        raise SignInRefused
    if not _verify(user.password_hash, password):
        # counted in the database, not in this process's copy: wrong passwords sent at once all count
        count = s.execute(update(WebUser).where(WebUser.id == user.id)
                          .values(failed_tries=WebUser.failed_tries + 1)
                          .returning(WebUser.failed_tries)).scalar_one()
        audit(s, actor=f"web:{user.login}", action="web_sign_in_failed", subject=subject, now=now,
              where=where, tries=count)
        if count >= tries:
            until = now + lock_for
            s.execute(update(WebUser).where(WebUser.id == user.id).values(failed_tries=0, locked_until=until))
            audit(s, actor="system", action="web_user_locked", subject=subject, now=now,
                  until=until.isoformat(timespec="seconds"))
        s.expire(user)
        raise SignInRefused
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.failed_tries, user.locked_until, user.last_sign_in = 0, None, now
    audit(s, actor=f"web:{user.login}", action="web_sign_in", subject=subject, now=now, where=where)
    return user


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass(frozen=True)
class Opened:
    cookie: str
    csrf: str


def new_session(s: Session, user: WebUser, *, now: dt.datetime, longest: dt.timedelta) -> Opened:
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    s.execute(delete(WebSession).where(WebSession.expires_at < now))            # the stale ones, on the way
    s.add(WebSession(token_hash=_digest(cookie), user_id=user.id, csrf=csrf, created_at=now, seen_at=now,
                     expires_at=now + longest))
    return Opened(cookie, csrf)


def session_of(s: Session, cookie: str | None, *, now: dt.datetime,
               idle: dt.timedelta) -> tuple[WebSession, WebUser] | None:
    """The live session of a cookie and its user; an expired, idle or disabled one is ended."""
    if not cookie or len(cookie) > 100:
        return None
    row = s.get(WebSession, _digest(cookie))
    if row is None:
        return None
    user = s.get(WebUser, row.user_id)
    if user is None or user.disabled or row.expires_at <= now or row.seen_at + idle <= now:
        s.delete(row)
        return None
    if (now - row.seen_at).total_seconds() > 60:          # not a write on every request
        row.seen_at = now
    return row, user


def end_session(s: Session, cookie: str | None) -> None:
    if cookie and len(cookie) <= 100:
        s.execute(delete(WebSession).where(WebSession.token_hash == _digest(cookie)))
