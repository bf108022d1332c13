"""The public sign-up for a loyalty card: a loyalty account, its first card and a cardholder web user.

The card number is new: the network's loyalty IIN (707701, firmware.config LoyaltySection), nine random
digits from `secrets` and the Luhn check digit (ISO/IEC 7812-1 annex B), 16 digits like the test cards.
The registry keeps it as every card: a keyed token, a masked number and the number sealed under the KEK.
The full number is returned once, for the page that shows it; the plastic card is sent later. The web
user's login is the e-mail, its password an argon2 hash (registry.web.auth).

Attempts are rate-limited, not confirmed by mail: the product has no mail transport, so there is no
confirmation link yet. Every attempt with a well-formed form counts, refused ones too ("e-mail taken"
included), so the "an account with this e-mail exists already" answer is an oracle of at most
RATE_PER_ADDRESS questions per client address per hour. The answer is the same whoever holds the login (a
cardholder, an operator, a fleet customer): logins are unique, a sign-up never takes one. Before any
expensive work (the argon2 hash) `reserve` takes a lock for this process, writes the attempt as an audit row
("web.signup_attempt", subject the address) and commits it, then counts again: an attempt counted beyond a
limit is marked "web.signup_refused" and refused, so parallel requests, even from two processes, never get
past the limit. The address's limit is checked first and its refusals do not count toward the network-wide
RATE_ALL, so one address cannot use up the others' sign-ups.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok
from contracts.errors import ForecourtError
from registry.fleet.admin import audit
from registry.keys import RegistryKeys
from registry.loyalty import admin
from registry.models import AuditEntry, Card, LoyaltyLink
from registry.web.auth import MAX_LOGIN, add_user
from registry.web_models import WebUser

__all__ = ["ACTION", "ACTOR", "ATTEMPT", "CARD_YEARS", "LANGUAGES", "LOYALTY_IIN", "REFUSED", "SignUpError",
           "SignUpForm", "SignedUp", "card_expiry", "card_number", "check_form", "rate_limited", "reserve",
           "sign_up"]

LOYALTY_IIN = "707701"          # the network's loyalty cards (firmware.config LoyaltySection.iins)
NUMBER_DIGITS = 16
CARD_YEARS = 5                  # a new card is valid through the same month five years on
LANGUAGES = ("en", "ru", "es")
ACTOR = "web:signup"            # the audit's actor of a sign-up (nobody is signed in), then ":" + address
ACTION = "web.signup"           # a sign-up done
ATTEMPT = "web.signup_attempt"  # an attempt counted (subject "address:<client address>")
REFUSED = "web.signup_refused"  # an attempt found beyond a limit after it was written (another process's)
RATE_WINDOW = dt.timedelta(hours=1)
RATE_PER_ADDRESS = 5            # attempts from one client address within RATE_WINDOW
RATE_ALL = 200                  # attempts from anywhere within RATE_WINDOW (each may cost an argon2 hash)
_GATE = threading.Lock()        # one check and write of an attempt at a time in this process
MIN_PASSWORD, MAX_PASSWORD = 10, 200
MAX_EMAIL = MAX_LOGIN           # the e-mail is the login (RFC 5321 allows 254; the audit names logins whole)
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", re.ASCII)
_NAME = re.compile(r"[^\x00-\x1f\x7f|<>]{1,100}")
_DRAWS = 20                     # new numbers tried before giving up (a clash is 1 in 10**9 per card)


class SignUpError(ForecourtError):
    """A sign-up refused; `code` names why (the page shows a text per code): name, email, email_taken,
    password, language, consent, busy, too_many."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, field=code)
        self.code = code


@dataclass(frozen=True)
class SignUpForm:
    name: str
    email: str
    password: str = field(repr=False)
    language: str = "en"
    consent: bool = False


@dataclass(frozen=True)
class SignedUp:
    """A sign-up done; `number` is the card's full number, for the one page that shows it."""

    account_id: int
    user_id: int
    login: str
    masked: str
    expiry: str
    number: str = field(repr=False)


def card_number(draw: Callable[[int], int] = secrets.randbelow, iin: str = LOYALTY_IIN) -> str:
    """A new loyalty card number: the IIN, random digits and the Luhn check digit.

    >>> number = card_number(lambda n: 12345)
    >>> number, luhn_ok(number)
    ('7077010000123457', True)
    """
    body_digits = NUMBER_DIGITS - len(iin) - 1
    body = iin + f"{draw(10 ** body_digits):0{body_digits}d}"
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def card_expiry(today: dt.date, years: int = CARD_YEARS) -> str:
    """YYMM, the same month `years` on.

    >>> card_expiry(dt.date(2026, 12, 2))
    '3112'
    """
    return f"{(today.year + years) % 100:02d}{today.month:02d}"


def check_form(form: SignUpForm) -> SignUpForm:
    """The form with its fields trimmed and the e-mail in lower case; SignUpError for the first wrong one."""
    name = " ".join(form.name.split())
    if not _NAME.fullmatch(name):
        raise SignUpError("name", "the name must be 1 to 100 characters")
    email = form.email.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise SignUpError("email", "the e-mail address is not valid")
    if not MIN_PASSWORD <= len(form.password) <= MAX_PASSWORD:
        raise SignUpError("password", f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if form.password.strip().lower() == email or form.password.isdigit() and len(set(form.password)) < 3:
        raise SignUpError("password", "the password is too easy to guess")
    if form.language not in LANGUAGES:
        raise SignUpError("language", f"the language must be one of {', '.join(LANGUAGES)}")
    if form.consent is not True:
        raise SignUpError("consent", "the programme's terms must be accepted")
    return SignUpForm(name, email, form.password, form.language, True)


def _login_taken(s: Session, login: str) -> bool:
    return s.scalar(select(func.count()).select_from(WebUser).where(func.lower(WebUser.login) == login)) != 0


def _free_number(s: Session, keys: RegistryKeys, draw: Callable[[int], int]) -> str:
    for _ in range(_DRAWS):
        number = card_number(draw)
        token = keys.token(number)
        if s.scalar(select(Card.id).where(Card.token == token)) is None and s.get(LoyaltyLink, token) is None:
            return number
    raise SignUpError("busy", "no free card number was found: try again")


def _actor(where: str) -> str:
    return f"{ACTOR}:{where}"[:64] if where else ACTOR


def _subject(where: str) -> str:
    return f"address:{where or '-'}"[:64]


def _counts(s: Session, where: str, now: dt.datetime) -> tuple[int, int]:
    """Attempts counted within RATE_WINDOW: from client address `where`, and from anywhere."""
    recent = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == ATTEMPT,
                                                                 AuditEntry.at > now - RATE_WINDOW)
    mine = int(s.scalar(recent.where(AuditEntry.subject == _subject(where))) or 0)
    return mine, int(s.scalar(recent) or 0)


def rate_limited(s: Session, where: str, now: dt.datetime) -> bool:
    """Whether one more attempt from client address `where` now would pass RATE_PER_ADDRESS (checked
    first) or RATE_ALL."""
    mine, every = _counts(s, where, now)
    return mine >= RATE_PER_ADDRESS or every >= RATE_ALL


def _too_many() -> SignUpError:
    return SignUpError("too_many", "too many sign-ups from here: try again in an hour")


def reserve(s: Session, where: str, now: dt.datetime) -> None:
    """Count one sign-up attempt from client address `where`: written and committed at once (so `s` must
    hold nothing else), or SignUpError "too_many" when it would pass a limit. Within this process a lock
    keeps the check and the write together; across processes the count after the commit decides, and an
    attempt found beyond a limit there is marked refused (it then counts toward no limit)."""
    with _GATE:
        if rate_limited(s, where, now):
            s.rollback()
            raise _too_many()
        entry = audit(s, actor=_actor(where), action=ATTEMPT, subject=_subject(where), now=now)
        s.commit()
        mine, every = _counts(s, where, now)
        if mine > RATE_PER_ADDRESS or every > RATE_ALL:
            entry.action = REFUSED
            s.commit()
            raise _too_many()


def sign_up(s: Session, keys: RegistryKeys, form: SignUpForm, *, now: dt.datetime, where: str = "",
            timezone: str = "UTC", draw: Callable[[int], int] = secrets.randbelow,
            cheap: bool = False) -> SignedUp:
    """Create the loyalty account, its card (active) and the cardholder's web user; audited.

    `where` is the client's address. A well-formed form is first counted as an attempt (`reserve`, which
    commits: pass a session with nothing pending); the rest is written and left for the caller to commit.
    An e-mail already signed up with, or any user's login, is refused (SignUpError "email_taken") before
    anything else is written."""
    form = check_form(form)
    reserve(s, where, now)
    if _login_taken(s, form.email):
        raise SignUpError("email_taken", "an account with this e-mail address exists already: sign in")
    account = admin.create_account(s, form.name, issued_on=now.date(), timezone=timezone, actor=ACTOR,
                                   now=now)
    number = _free_number(s, keys, draw)
    expiry = card_expiry(now.date())
    card = admin.add_card(s, keys, account.id, number, medium="chip", expiry=expiry, actor=ACTOR, now=now)
    user = add_user(s, form.email, form.password, role="cardholder", actor=ACTOR, now=now, name=form.name,
                    account_id=account.id, language=form.language, cheap=cheap)
    audit(s, actor=_actor(where), action=ACTION, subject=f"account:{account.id}", now=now, user=user.id,
          card=card.id, masked=card.masked, language=form.language)
    return SignedUp(account.id, user.id, user.login, card.masked, expiry, number)
