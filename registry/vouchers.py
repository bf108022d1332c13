"""Paper vouchers for a volume of a product, redeemed once network-wide by typing their code (issue 15).

A code is 19 digits typed on the PIN pad: 18 from `secrets` and a Luhn check digit (ISO/IEC 7812-1
annex B), printed in groups of four; 19 is the most a terminal seals (contracts.panseal, as card
numbers). The registry keeps only a keyed digest of it (HMAC-SHA256 under a key derived from the
card-token key, `code_key`) and its last four digits as a hint for operators; the code itself is in no
log, error or audit entry.

`redeem` turns a voucher from issued to redeemed with one conditional UPDATE (... WHERE status =
'issued'): of two terminals at the same moment one gets the voucher, the other "used". It commits what
it decides, as the authorization does: a redemption, or a wrong code counted against the terminal. A
terminal with MAX_MISSES unknown codes within MISS_WINDOW is refused every code until the oldest of them
is MISS_WINDOW old. `release` makes a voucher usable again when its sale dispensed nothing; a sale that
dispensed anything spends the whole voucher. `issue` and `void` are operator commands: audited, committed
by the caller.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok
from contracts.errors import ConfigError, ForecourtError
from registry.fleet.admin import audit, need_reason
from registry.fleet.rules import local_time
from registry.keys import RegistryKeys
from registry.models import AuditEntry, Nozzle, Product, Voucher

__all__ = ["CODE_DIGITS", "MAX_MISSES", "MISS_WINDOW", "REASONS", "IssuedVoucher", "Redeemed",
           "VoucherError", "VoucherRefused", "code_digest", "code_key", "find", "group_code", "issue",
           "new_code", "redeem", "release", "spend", "void"]

CODE_DIGITS = 19                        # 18 random digits (about 60 bits) and the check digit
MAX_MISSES = 5                          # unknown codes per terminal ...
MISS_WINDOW = dt.timedelta(minutes=10)  # ... within this window, then refused until the oldest ages out
MAX_VOLUME_CL = 150_00                  # one filling (docs/fleet.md): a voucher is spent in one sale
MAX_COUNT = 1000                        # vouchers per issue
MISS_ACTION = "voucher.miss"            # audit entry of an unknown code typed at a terminal
# Why a code is refused (VoucherRefused.reason): the terminal shows a text per reason.
REASONS = ("malformed", "check_digit", "too_many_tries", "unknown", "used", "void", "expired",
           "not_sold_here")
_KEY_INFO = b"forecourt voucher code digest v1"
_BATCH = re.compile(r"[A-Za-z0-9._:/-]{0,32}", re.ASCII)


class VoucherError(ForecourtError):
    """An operator change the voucher's state does not allow (voiding a redeemed voucher)."""


class VoucherRefused(ForecourtError):
    """A code the registry does not redeem; `reason` is one of REASONS. Never carries the code."""

    def __init__(self, reason: str, message: str, **context: object) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


@dataclass(frozen=True)
class Redeemed:
    """What a redeemed voucher pays for: up to volume_cl of product, in one sale."""

    voucher_id: int
    product: str
    volume_cl: int


@dataclass(frozen=True)
class IssuedVoucher:
    """A voucher just issued, with its code (only here, for printing; never shown by repr)."""

    voucher_id: int
    code: str = field(repr=False)
    product: str
    volume_cl: int
    expires_on: dt.date | None
    batch: str


def code_key(keys: RegistryKeys) -> bytes:
    """The digest key: HKDF-SHA256 (RFC 5869) of the card-token key with its own label, so a code's
    digest is never a card token of the same digits and no new key file is needed."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(keys.card_key)


def code_digest(key: bytes, code: str) -> str:
    """What the database keeps of a code: HMAC-SHA256 under code_key, 64 hex digits."""
    return hmac.new(key, code.encode("ascii"), hashlib.sha256).hexdigest()


def new_code() -> str:
    """18 random digits from `secrets` and the Luhn check digit that makes the 19 valid."""
    body = f"{secrets.randbelow(10 ** (CODE_DIGITS - 1)):0{CODE_DIGITS - 1}d}"
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def group_code(code: str) -> str:
    """The code as printed: groups of four.

    >>> group_code("1234567890123456789")
    '1234 5678 9012 3456 789'
    """
    return " ".join(code[i:i + 4] for i in range(0, len(code), 4))


def issue(s: Session, keys: RegistryKeys, *, product: str, volume_cl: int, count: int,
          expires_on: dt.date | None, batch: str = "", now: dt.datetime, actor: str) -> list[IssuedVoucher]:
    """`count` new vouchers for volume_cl of `product`, valid through expires_on (inclusive; None: no
    expiry). Audited with their ids, never their codes. The caller commits, then prints the codes."""
    if s.get(Product, product) is None:
        raise ConfigError("unknown product", key="product", product=product[:32])
    if isinstance(volume_cl, bool) or not 1 <= volume_cl <= MAX_VOLUME_CL:
        raise ConfigError(f"a voucher is for 0.01 to {MAX_VOLUME_CL // 100} L (one filling)", key="litres")
    if isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"count must be 1 to {MAX_COUNT}", key="count")
    if expires_on is not None and expires_on < now.date():
        raise ConfigError("the expiry date is in the past", key="expires")
    if not _BATCH.fullmatch(batch):
        raise ConfigError("batch must be at most 32 letters, digits and . _ : / -", key="batch")
    key, made = code_key(keys), list[IssuedVoucher]()
    while len(made) < count:
        code = new_code()
        digest = code_digest(key, code)
        if s.scalar(select(Voucher.id).where(Voucher.code_digest == digest)) is not None:
            continue                    # a repeat of a live code (1 in 10**18 per code): draw again
        row = Voucher(code_digest=digest, code_hint=code[-4:], product=product, volume_cl=volume_cl,
                      status="issued", batch=batch, issued_at=now, expires_on=expires_on)
        s.add(row)
        s.flush()                       # the same digest twice in this batch fails here, never silently
        made.append(IssuedVoucher(row.id, code, product, volume_cl, expires_on, batch))
    ids = f"vouchers:{made[0].voucher_id}-{made[-1].voucher_id}"
    audit(s, actor=actor, action="voucher.issue", subject=ids, now=now, product=product, volume_cl=volume_cl,
          count=count, expires_on=expires_on, batch=batch)
    return made


def _checked(code: str) -> str:
    code = code.replace(" ", "")
    if len(code) != CODE_DIGITS or not (code.isascii() and code.isdigit()):
        raise VoucherRefused("malformed", f"a voucher code is {CODE_DIGITS} digits")
    if not luhn_ok(code):
        raise VoucherRefused("check_digit", "the code is mistyped (its check digit does not match)")
    return code


def _misses(s: Session, terminal: str, now: dt.datetime) -> list[dt.datetime]:
    """When the terminal's unknown codes within MISS_WINDOW were typed, oldest first."""
    return list(s.scalars(select(AuditEntry.at).where(
        AuditEntry.action == MISS_ACTION, AuditEntry.subject == _subject(terminal),
        AuditEntry.at > now - MISS_WINDOW).order_by(AuditEntry.at)))


def _subject(terminal: str) -> str:
    return f"terminal:{terminal}"[:64]


def redeem(s: Session, keys: RegistryKeys, code: str, *, terminal: str, station: str, now: dt.datetime,
           request: str | None = None, timezone: str = "UTC") -> Redeemed:
    """Redeem a voucher at `terminal` of `station` for the authorization `request` (its id, optional);
    VoucherRefused otherwise. The same terminal asking again with the same request gets the same voucher
    (an answer lost on the way). Expiry is judged by the local date in `timezone`. Runs and commits its
    own transactions on `s` (give it a session with nothing pending)."""
    code = _checked(code)
    if request is not None and not 0 < len(request) <= 36:
        raise ConfigError("an authorization id is 1 to 36 characters", key="request")
    s.rollback()
    misses = _misses(s, terminal, now)
    s.rollback()        # no read transaction left open: SQLite could not turn a stale one into a write
    if len(misses) >= MAX_MISSES:
        raise VoucherRefused("too_many_tries", "too many unknown codes at this terminal: try again later",
                             terminal=terminal, until=(misses[-MAX_MISSES] + MISS_WINDOW).isoformat())
    digest = code_digest(code_key(keys), code)
    today = local_time(now, timezone).date()
    # The one decision: only an issued, unexpired voucher turns redeemed; a second terminal's UPDATE
    # finds it redeemed (PostgreSQL re-reads the row after the first commits) and changes nothing.
    won = s.execute(update(Voucher).where(
        Voucher.code_digest == digest, Voucher.status == "issued",
        or_(Voucher.expires_on.is_(None), Voucher.expires_on >= today),
    ).values(status="redeemed", redeemed_at=now, terminal=terminal[:64], auth_id=request)
        .execution_options(synchronize_session=False))
    voucher = s.scalars(select(Voucher).where(Voucher.code_digest == digest)
                        .execution_options(populate_existing=True)).one_or_none()
    if getattr(won, "rowcount", 0) == 1 and voucher is not None:
        if not _sold_at(s, voucher.product, station):
            s.rollback()
            raise VoucherRefused("not_sold_here", "this station does not sell the voucher's product",
                                 voucher=voucher.id, station=station)
        audit(s, actor=terminal, action="voucher.redeem", subject=f"voucher:{voucher.id}", now=now,
              station=station, request=request)
        s.commit()
        return Redeemed(voucher.id, voucher.product, voucher.volume_cl)
    if voucher is None:
        audit(s, actor=terminal, action=MISS_ACTION, subject=_subject(terminal), now=now, station=station)
        s.commit()                      # counted, whatever the caller does with the error
        raise VoucherRefused("unknown", "no voucher has this code", terminal=terminal)
    s.rollback()
    if voucher.status == "redeemed":
        if request is not None and voucher.auth_id == request and voucher.terminal == terminal[:64]:
            return Redeemed(voucher.id, voucher.product, voucher.volume_cl)       # the same request again
        raise VoucherRefused("used", "this voucher has been used", voucher=voucher.id)
    if voucher.status == "void":
        raise VoucherRefused("void", "this voucher was withdrawn", voucher=voucher.id)
    if voucher.expires_on is not None and voucher.expires_on < today:
        raise VoucherRefused("expired", "this voucher has expired", voucher=voucher.id,
                             expires_on=str(voucher.expires_on))
    raise VoucherRefused("used", "this voucher is being used at another terminal", voucher=voucher.id)


def _sold_at(s: Session, product: str, station: str) -> bool:
    return s.scalar(select(func.count()).select_from(Nozzle).where(
        Nozzle.station_id == station, Nozzle.product_code == product)) != 0


def release(s: Session, voucher_id: int, *, terminal: str, now: dt.datetime, request: str | None = None,
            actor: str | None = None, reason: str = "") -> bool:
    """Make a redeemed voucher usable again: its sale dispensed nothing. Only the terminal (and request)
    that redeemed it may; an operator (actor, with a reason) names that terminal too. False when the
    voucher is not redeemed there (released already, or used elsewhere). Commits."""
    if actor is not None:
        reason = need_reason(reason)
    where = [Voucher.id == voucher_id, Voucher.status == "redeemed", Voucher.terminal == terminal[:64],
             Voucher.sale_id.is_(None)]           # a voucher its synced sale dispensed on stays spent
    if request is not None:
        where.append(Voucher.auth_id == request)
    done = s.execute(update(Voucher).where(*where).values(status="issued", redeemed_at=None, terminal=None,
                                                            auth_id=None)
                     .execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) != 1:
        s.rollback()
        return False
    audit(s, actor=actor or terminal, action="voucher.release", subject=f"voucher:{voucher_id}", now=now,
          reason=reason, terminal=terminal, request=request)
    s.commit()
    return True


def spend(s: Session, voucher_id: int, *, terminal: str, sale_id: str) -> bool:
    """A synced sale that dispensed on a voucher: the voucher is spent for good (release refuses it). False
    when this terminal holds no redemption of it, or another sale spent it: the caller flags the sale.
    Nothing commits here (the sale's transaction does)."""
    done = s.execute(update(Voucher).where(
        Voucher.id == voucher_id, Voucher.status == "redeemed", Voucher.terminal == terminal[:64],
        or_(Voucher.sale_id.is_(None), Voucher.sale_id == sale_id)).values(sale_id=sale_id)
        .execution_options(synchronize_session=False))
    return getattr(done, "rowcount", 0) == 1


def void(s: Session, voucher_id: int, *, actor: str, reason: str, now: dt.datetime) -> Voucher:
    """Withdraw an issued voucher for good (lost, stolen, printed wrong); a redeemed one is a VoucherError.
    Audited; the caller commits."""
    reason = need_reason(reason)
    done = s.execute(update(Voucher).where(Voucher.id == voucher_id, Voucher.status == "issued")
                     .values(status="void").execution_options(synchronize_session=False))
    voucher = s.get(Voucher, voucher_id, populate_existing=True)
    if voucher is None:
        raise ConfigError("unknown voucher", voucher=voucher_id)
    if getattr(done, "rowcount", 0) != 1:
        raise VoucherError(f"the voucher is {voucher.status}, not issued", voucher=voucher_id)
    audit(s, actor=actor, action="voucher.void", subject=f"voucher:{voucher_id}", now=now, reason=reason)
    return voucher


def find(s: Session, *, voucher_id: int | None = None, hint: str | None = None, batch: str | None = None,
         status: str | None = None, limit: int = 1000) -> list[Voucher]:
    """Vouchers by id, hint (the code's last four digits: may be several), batch or status; newest first."""
    query = select(Voucher).order_by(Voucher.id.desc()).limit(limit)
    if voucher_id is not None:
        query = query.where(Voucher.id == voucher_id)
    if hint is not None:
        if not re.fullmatch(r"[0-9]{4}", hint, re.ASCII):
            raise ConfigError("a hint is the code's last 4 digits", key="hint")
        query = query.where(Voucher.code_hint == hint)
    if batch is not None:
        query = query.where(Voucher.batch == batch)
    if status is not None:
        if status not in ("issued", "redeemed", "void"):
            raise ConfigError("status must be issued, redeemed or void", key="status")
        query = query.where(Voucher.status == status)
    return list(s.scalars(query))
