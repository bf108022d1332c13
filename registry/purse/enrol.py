"""Enrolling a terminal's SAM and personalising a card's purse: the issuer's side (docs/chip-wallet-keys.md).

Pure over a database session: nothing commits here (the caller does) and nothing secret leaves in the
clear. A SAM gets a certificate from the issuer CA and its SAM MAC key sealed to its own P-256 key
(contracts.purse_seal), which only that SAM opens. A card gets its keys derived from the issuer masters,
its certificate and its wallets: that package goes straight into the chip. In production
`personalise_card` runs inside the personalisation bureau's HSM and the package never exists outside the
HSM and the card; here the KEK-sealed masters (registry.purse.issuer) stand in for the HSM.

`answer_sam_enrolment` is the registry's answer to a terminal's request over the service channel
(contracts.service_messages, op "sam_enrol"); provisioning.sam builds the request and applies the answer.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.purse_keys import ID_LEN, Purpose
from contracts.purse_seal import sam_key_context, seal_for_sam
from contracts.purse_session import Certificate, Role, SessionError, issue_certificate, load_public_key
from contracts.purse_wallets import PurseDataError, Wallet
from contracts.service_messages import ServiceReason
from registry.fleet.admin import audit
from registry.models import Card, Device
from registry.models import Wallet as LedgerWallet
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import PurseError, purse_by_id, register_purse, register_sam, wallet_unit
from registry.purse_models import ChipPurse, is_chip_shadow
from registry.purse_models import PurseSam as SamRow
from registry.service_desk_ask import Ask, Refused

__all__ = ["CARD_PURPOSES", "REPLACED", "SAM_CERT_YEARS", "SAM_TAKEN", "CardPackage", "EnrolmentRefused",
           "SamEnrolment", "WalletSpec", "answer_sam_enrolment", "card_wallets", "enrol_sam", "new_purse_id",
           "personalise_card", "sam_enrol", "sams", "set_sam_status"]

SAM_CERT_YEARS = 5                 # a SAM certificate's life; a SAM outliving it is enrolled again
CERT_KEY_VERSION = 1               # a card or SAM makes one key pair in its life: its certificate says 1
CARD_PURPOSES = (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN)
SAM_TAKEN = "sam_taken"            # the service reason: this SAM is fitted to another active terminal
REPLACED = "replaced"              # a SAM row's status once another SAM is fitted to its terminal
_U32 = 2**32 - 1


class EnrolmentRefused(PurseError):
    """The issuer will not enrol this SAM or personalise this card; reason says why."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


def _unix(now: dt.datetime) -> int:
    """Unix seconds of a registry time (naive datetimes are UTC, as the registry stores them)."""
    return int((now if now.tzinfo else now.replace(tzinfo=dt.UTC)).timestamp())


@dataclass(frozen=True)
class SamEnrolment:
    """What a SAM receives: its certificate, the CA's key, its SAM MAC key sealed to it (opaque)."""

    sam_id: bytes
    terminal: str
    certificate: bytes
    ca_public_key: bytes
    key_version: int
    sam_key_sealed: bytes = field(repr=False)
    expiry: int                    # the certificate's, Unix seconds
    created: bool                  # False: this SAM was enrolled at this terminal before

    def answer(self) -> dict[str, Any]:
        """The service answer's result (hex strings): what provisioning.sam.apply_enrolment takes."""
        return {"sam_id": self.sam_id.hex(), "certificate": self.certificate.hex(),
                "ca_public_key": self.ca_public_key.hex(), "key_version": self.key_version,
                "sam_key_sealed": self.sam_key_sealed.hex(), "expiry": self.expiry}


def _check_ids(sam_id: bytes, public_key: bytes) -> None:
    if len(sam_id) != ID_LEN:
        raise EnrolmentRefused("a SAM id is 8 bytes", reason="bad_request", length=len(sam_id))
    try:
        load_public_key(public_key)
    except SessionError:
        raise EnrolmentRefused("the SAM's public key is not a compressed P-256 point",
                               reason="bad_request") from None


def enrol_sam(s: Session, issuer: IssuerKeys, *, terminal: str, sam_id: bytes, sam_public_key: bytes,
              now: dt.datetime, replace: bool = False, actor: str = "provisioning") -> SamEnrolment:
    """Certify a SAM's key, seal its SAM MAC key (current version) to it and register it at `terminal`.

    The same SAM at the same terminal again is idempotent (a fresh certificate for the same key, the same
    registration, the current key version: how a SAM is re-keyed after a rotation). A SAM active at another
    active terminal, or one an operator revoked, is refused (reason sam_taken) unless replace. A terminal
    has one SAM slot: the SAM it had before becomes "replaced" (records it MACed still verify). The SAM's
    public key is pinned at its first enrolment: the same id with another key is refused (key_changed)."""
    _check_ids(sam_id, sam_public_key)
    device = s.get(Device, terminal)
    if device is None or device.status != "active":
        raise EnrolmentRefused("a SAM is fitted to an active terminal", reason="unknown_terminal",
                               terminal=terminal)
    version = issuer.current_version(Purpose.SAM)
    row = s.get(SamRow, sam_id.hex())
    if row is not None and row.public_key is not None and row.public_key != sam_public_key.hex():
        # the key a SAM id was first enrolled with is pinned: another key is another chip claiming its id
        raise EnrolmentRefused("this SAM id was enrolled with another key", reason="key_changed",
                               terminal=terminal)
    created = row is None or row.terminal != terminal or row.status != "active"
    if row is not None and row.status == "revoked" and not replace:
        raise EnrolmentRefused("this SAM was revoked", reason=SAM_TAKEN, terminal=terminal)
    if row is not None and row.terminal != terminal and row.status == "active" and not replace:
        other = s.get(Device, row.terminal)
        if other is not None and other.status == "active":
            raise EnrolmentRefused("this SAM is fitted to another active terminal", reason=SAM_TAKEN,
                                   terminal=terminal)
    for old in s.scalars(select(SamRow).where(SamRow.terminal == terminal, SamRow.status == "active",
                                              SamRow.sam_id != sam_id.hex())):
        old.status = REPLACED
        audit(s, actor=actor, action="purse_sam_replaced", subject=f"sam:{old.sam_id}", now=now,
              reason="another SAM fitted", terminal=terminal)
    if row is None:
        row = register_sam(s, sam_id, terminal, now=now, key_version=version)
    else:
        row.terminal, row.key_version, row.status = terminal, version, "active"
    row.public_key = sam_public_key.hex()
    expiry = min(_U32, _unix(now) + SAM_CERT_YEARS * 365 * 86_400 + 86_400)     # +1 day: the leap days
    certificate = issue_certificate(issuer.ca_private_key(), Certificate(
        Role.SAM, sam_id, CERT_KEY_VERSION, expiry, sam_public_key))
    sealed = seal_for_sam(sam_public_key, issuer.sam_key(sam_id, version),
                          context=sam_key_context(sam_id, version))
    if created:
        audit(s, actor=actor, action="purse_sam_enrolled", subject=f"sam:{sam_id.hex()}", now=now,
              reason="moved" if replace else "", terminal=terminal, key_version=version, expiry=expiry)
    s.flush()
    return SamEnrolment(sam_id, terminal, certificate, issuer.ca_public_key(), version, sealed, expiry,
                        created)


def set_sam_status(s: Session, sam_id: bytes, status: str, *, actor: str, now: dt.datetime,
                   reason: str = "") -> SamRow:
    """An operator releases a SAM from its terminal (REPLACED: it may be fitted elsewhere) or revokes it
    (revoked: enrolled again only with replace). Records it MACed before still verify."""
    if status not in (REPLACED, "revoked"):
        raise PurseError("a SAM is released (replaced) or revoked", status=status)
    row = s.get(SamRow, sam_id.hex())
    if row is None:
        raise PurseError("no such SAM", sam=sam_id.hex())
    row.status = status
    audit(s, actor=actor, action=f"purse_sam_{status}", subject=f"sam:{row.sam_id}", now=now, reason=reason,
          terminal=row.terminal)
    s.flush()
    return row


def sams(s: Session, terminal: str | None = None) -> list[SamRow]:
    """The SAMs enrolled, by id; of one terminal when given."""
    query = select(SamRow).order_by(SamRow.sam_id)
    return list(s.scalars(query if terminal is None else query.where(SamRow.terminal == terminal)))


def _hex_field(req: Mapping[str, Any], name: str, size: int) -> bytes:
    value = req.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) and value == value.lower() else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise Refused(ServiceReason.NOT_ALLOWED, f"{name} is {size} bytes in lower-case hex")
    return raw


def answer_sam_enrolment(s: Session, issuer: IssuerKeys, req: Mapping[str, Any],
                         now: dt.datetime) -> dict[str, Any]:
    """The result of a terminal's "sam_enrol" service request: fields sam_id (16 hex) and sam_public_key
    (66 hex); the terminal is the request's, checked by the service desk (its TLS identity). Refused (a
    registry.service_desk_ask.Refused) with SAM_TAKEN or NOT_ALLOWED."""
    sam_id = _hex_field(req, "sam_id", ID_LEN)
    public = _hex_field(req, "sam_public_key", 33)
    try:
        got = enrol_sam(s, issuer, terminal=str(req["terminal"]), sam_id=sam_id, sam_public_key=public,
                        now=now, actor=f"terminal:{req['terminal']}")
    except EnrolmentRefused as exc:
        reason = SAM_TAKEN if exc.reason == SAM_TAKEN else ServiceReason.NOT_ALLOWED
        raise Refused(reason, "SAM enrolment refused") from None
    return got.answer()


def sam_enrol(a: Ask) -> dict[str, Any]:
    """answer_sam_enrolment in the shape of registry.service_desk.OPERATIONS (the desk commits)."""
    return answer_sam_enrolment(a.s, IssuerKeys.load(a.s, a.keys, now=a.now), a.req, a.now)


# -- the card bureau ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WalletSpec:
    """One chip wallet to personalise: its number, the registry wallet that shadows it (of the card's
    account, money or volume; its balance now is the chip's opening balance), the products (3-digit code
    ranges; None: the registry wallet's allowed_products), the expiry (YYYYMMDD; 0: the wallet's
    expires_on, else the card's expiry month's last day) and the card's own day and month limits."""

    number: int
    wallet_id: int
    products: tuple[tuple[int, int], ...] | None = None
    expiry: int = 0
    day_limit: int = 0
    month_limit: int = 0


@dataclass(frozen=True)
class CardPackage:
    """What the bureau writes into one chip. keys: the card's own AES keys by (purpose, version)."""

    purse_id: bytes
    keys: Mapping[tuple[Purpose, int], bytes] = field(repr=False)
    certificate: bytes
    ca_public_key: bytes
    wallets: tuple[Wallet, ...]
    expiry: int                    # the certificate's, Unix seconds

    def __repr__(self) -> str:     # never a key
        return (f"CardPackage(purse_id={self.purse_id.hex()}, wallets={len(self.wallets)}, "
                f"expiry={self.expiry})")


def new_purse_id(s: Session) -> bytes:
    """8 random bytes no purse has (the chip_purses unique index checks again at flush)."""
    while True:
        ident = secrets.token_bytes(ID_LEN)
        if any(ident) and purse_by_id(s, ident) is None:
            return ident


def _card_end(card: Card) -> tuple[int, int]:
    """The card's expiry (YYMM) as its last day: (YYYYMMDD, Unix seconds of that day's end, UTC)."""
    year, month = 2000 + int(card.expiry[:2]), int(card.expiry[2:])
    day = calendar.monthrange(year, month)[1]
    end = dt.datetime(year, month, day, 23, 59, 59, tzinfo=dt.UTC)
    return year * 10_000 + month * 100 + day, int(end.timestamp())


def _products(spec: WalletSpec, wallet: LedgerWallet) -> tuple[tuple[int, int], ...]:
    if spec.products is not None:
        return spec.products
    ranges = []
    for part in filter(None, (p.strip() for p in wallet.allowed_products.split(","))):
        low, _, high = part.partition("-")
        if not (low.isdigit() and len(low) == 3 and (not high or (high.isdigit() and len(high) == 3))):
            raise PurseError("give the chip wallet's products as code ranges: the wallet names network "
                             "product codes", wallet=wallet.id)
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


def card_wallets(s: Session, card: Card, specs: Sequence[WalletSpec]) -> tuple[Wallet, ...]:
    """The chip's wallet records, each opening at its shadow wallet's balance now."""
    if not 0 < len(specs) <= 8 or len({w.number for w in specs}) != len(specs):
        raise PurseError("a purse has 1 to 8 wallets, each number once", wallets=len(specs))
    end, _ = _card_end(card)
    made = []
    for spec in sorted(specs, key=lambda w: w.number):
        shadow = s.get(LedgerWallet, spec.wallet_id)
        if shadow is None or shadow.account_id != card.account_id or shadow.status != "active":
            raise PurseError("a chip wallet is shadowed by an active wallet of the card's account",
                             wallet=spec.wallet_id)
        if is_chip_shadow(s, shadow.id):
            raise PurseError("this wallet shadows another chip wallet already", wallet=shadow.id)
        if s.scalar(select(Card.id).where(Card.wallet_id == shadow.id)) is not None:
            # a card issued on this one wallet would spend the chip's value online too
            raise PurseError("a card is issued on this wallet: it cannot shadow a chip wallet",
                             wallet=shadow.id)
        if not 0 <= shadow.balance <= _U32:
            raise PurseError("a chip wallet opens at 0..2**32-1 (cents or centilitres)", wallet=shadow.id)
        expiry = spec.expiry or (int(shadow.expires_on.strftime("%Y%m%d")) if shadow.expires_on else end)
        try:
            made.append(Wallet(number=spec.number, unit=wallet_unit(shadow), balance=shadow.balance,
                               products=_products(spec, shadow), expiry=expiry, day_limit=spec.day_limit,
                               month_limit=spec.month_limit))
        except PurseDataError as exc:
            raise PurseError(f"chip wallet {spec.number}: {exc}", wallet=spec.wallet_id) from None
    return tuple(made)


def personalise_card(s: Session, issuer: IssuerKeys, *, card_id: int, wallets: Sequence[WalletSpec],
                     card_public_key: bytes, now: dt.datetime, purse_id: bytes | None = None,
                     actor: str = "bureau") -> CardPackage:
    """The bureau's step for one registry card: a new purse id (or the one the bureau drew with
    new_purse_id), the card's keys of each purpose at their current versions, its certificate (role CARD,
    valid to the end of the card's expiry month) for the public key the chip made, and the purse and its
    chip wallets registered. One purse per card: a card with a purse is refused (reissue a new card)."""
    card = s.get(Card, card_id)
    if card is None or card.account_id is None or card.status not in ("new", "active"):
        raise EnrolmentRefused("personalise an active card of an account", reason="card", card=card_id)
    if s.scalar(select(ChipPurse.id).where(ChipPurse.card_id == card_id)) is not None:
        raise EnrolmentRefused("this card has a purse already", reason="has_purse", card=card_id)
    try:
        load_public_key(card_public_key)
    except SessionError:
        raise EnrolmentRefused("the card's public key is not a compressed P-256 point",
                               reason="bad_request") from None
    ident = purse_id if purse_id is not None else new_purse_id(s)
    if len(ident) != ID_LEN or purse_by_id(s, ident) is not None:
        raise EnrolmentRefused("a purse id is 8 bytes no other purse has", reason="purse_id")
    records = card_wallets(s, card, wallets)
    versions = {p: issuer.current_version(p) for p in CARD_PURPOSES}
    keys = {(p, v): issuer.card_key(ident, p, v) for p, v in versions.items()}
    _, expiry = _card_end(card)
    certificate = issue_certificate(issuer.ca_private_key(), Certificate(
        Role.CARD, ident, CERT_KEY_VERSION, min(expiry, _U32), card_public_key))
    purse = register_purse(s, card_id, ident, {w.number: w.wallet_id for w in wallets}, now=now)
    purse.auth_version, purse.record_version = versions[Purpose.AUTH], versions[Purpose.RECORD]
    purse.load_version, purse.admin_version = versions[Purpose.LOAD], versions[Purpose.ADMIN]
    audit(s, actor=actor, action="purse_personalised", subject=f"card:{card_id}", now=now,
          purse=ident.hex(), wallets={w.number: w.wallet_id for w in wallets},
          versions={p.value.decode(): v for p, v in versions.items()})
    s.flush()
    return CardPackage(ident, keys, certificate, issuer.ca_public_key(), records, min(expiry, _U32))
