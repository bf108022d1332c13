"""Signed purse records in: the registry's checks, in the order of docs/chip-wallets.md, and the ledger.

For each item (a 60-byte signed record, and the SAM's id, sequence and MAC when the terminal gave them):
an identical record already received is nothing (a bundle imported twice books nothing; but one first
received without a SAM's MAC, from the card's log, that comes again with one has that SAM sequence
recorded, so the SAM's next record shows no false sam_seq_gap); otherwise it is
stored as received, then checked: malformed, bad_signature (RECORD key of the record's version; a retired
version is flagged retired_key, still counted), unknown_purse, replay (another record already counted for
this purse and counter: not counted), counter_gap, unknown_wallet / unit_mismatch (not counted),
balance_mismatch (previous balance against the shadow, for a record in sequence), stop_listed_offline, and
the SAM's: sam_unknown, sam_mac_bad, sam_seq_gap (flagged; the card-signed debit still counts: the card's
MAC proves the debit, the SAM's only which terminal forwarded it). A debit counted posts one "chip_sale"
movement, key purse:<purse id>:<counter>; a LOAD record confirms the load the issuer granted at the counter
before it (registry.purse.loads booked it then).

Each item first takes its account's lock (ledger.lock_account), so two sessions with the same record take
turns and the second finds it stored. Behind that, the unique digest and counted key: on PostgreSQL each
item runs in a savepoint, and one that meets a concurrent insert anyway (a record of no known purse) is
rolled back and read again. On SQLite (one writer at a time; pysqlite's RELEASE of a first SAVEPOINT would
commit) there is no savepoint, and "database is locked" after the busy timeout is the caller's to retry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.purse_keys import MAC_LEN, Purpose, verify_mac
from contracts.purse_records import RECORD_LEN, SIGNED_LEN, Kind, PurchaseRecord, RecordError, decode
from contracts.purse_sam_apdu import verify_sam_record_mac
from registry.fleet import ledger
from registry.fleet.cards import STOP_LIST
from registry.models import AuditEntry, Card
from registry.purse.grants import confirm_grant, rebook_grant, reverse_grant
from registry.purse.issuer import IssuerKeys, PurseKeyMissing
from registry.purse.purses import chip_wallet, flag, purse_by_id, wallet_unit
from registry.purse_models import ChipPurse, PurseLoad, PurseRecord, PurseSam, PurseScript

__all__ = ["GAP_SPAN", "IngestReport", "Item", "booked_after", "ingest", "settle_by_records", "status_at",
           "unexplained"]

GAP_SPAN = 10_000        # counters checked one by one for scripts between two records; more is a gap
BOOKED = ("authorized", "in_doubt", "confirmed")


@dataclass(frozen=True)
class Item:
    """One record as a terminal forwards it."""

    record: bytes
    sam_id: bytes | None = None
    sam_seq: int | None = None
    sam_mac: bytes | None = None


@dataclass
class IngestReport:
    counted: int = 0          # records that counted (a debit posted, or a load confirmed)
    duplicate: int = 0        # identical to one received before: nothing done
    stored: int = 0           # stored, counted or not
    flags: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.flags[name] = self.flags.get(name, 0) + 1


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def unexplained(s: Session, purse: ChipPurse, after: int, before: int) -> int:
    """How many counters strictly between `after` and `before` no issued script explains (a script MACed
    for counter c uses c + 1 on the card)."""
    if before - after - 1 <= 0:
        return 0
    if before - after - 1 > GAP_SPAN:
        return before - after - 1
    used = {c + 1 for c in s.scalars(select(PurseScript.issued_counter).where(
        PurseScript.purse_id == purse.id, PurseScript.issued_counter >= after,
        PurseScript.issued_counter < before - 1)) if c is not None}
    return sum(1 for c in range(after + 1, before) if c not in used)


def booked_after(s: Session, purse: ChipPurse, wallet: int, counter: int) -> int:
    """What granted loads booked on the shadow that the card applies at `counter` or later (their record's
    counter is the grant's + 1): the shadow a record at `counter` started from is the shadow less these."""
    total = s.scalar(select(func.coalesce(func.sum(PurseLoad.amount), 0)).where(
        PurseLoad.purse_id == purse.id, PurseLoad.wallet == wallet, PurseLoad.status.in_(BOOKED),
        PurseLoad.counter + 1 >= counter))
    return int(total or 0)


def _script_took(s: Session, purse: ChipPurse, counter: int) -> bool:
    """Whether the card applied an issuer script at `counter` (reported by the terminal it was issued to):
    the card moved from `counter` to the next by that script, so no load applied there."""
    return s.scalars(select(PurseScript.id).where(
        PurseScript.purse_id == purse.id, PurseScript.status == "applied",
        PurseScript.issued_counter == counter)).first() is not None


def settle_by_records(s: Session, purse: ChipPurse, *, now: dt.datetime) -> list[PurseLoad]:
    """Open grants whose counter's next record is counted: confirmed when it is their LOAD, reversed
    (the funding moved back) when it is anything else; and reversed when the card applied an issuer script
    at the grant's counter (a script that leaves no record there, a completion's record carrying the
    reservation's counter): the grant's MAC is dead and the card never applied it, so its order is offered
    again. A counted record further on alone settles nothing: the LOAD may still come from the card's log.
    The grants settled."""
    settled = []
    for grant in s.scalars(select(PurseLoad).where(PurseLoad.purse_id == purse.id,
                                                   PurseLoad.status.in_(("authorized", "in_doubt")))):
        found = s.scalars(select(PurseRecord).where(
            PurseRecord.counted_key == f"{purse.purse_id}:{grant.counter + 1}")).one_or_none()
        if found is None:
            if _script_took(s, purse, grant.counter):
                reverse_grant(s, grant, now=now)
                settled.append(grant)
            continue
        taken = s.scalars(select(PurseLoad.load_id).where(PurseLoad.record_id == found.id)).first()
        if found.kind == Kind.LOAD and (found.wallet, found.amount) == (grant.wallet, grant.amount) \
                and taken is None:
            confirm_grant(s, grant, found, now=now)
            s.flush()
        else:
            reverse_grant(s, grant, now=now)
        settled.append(grant)
    return settled


def _store(s: Session, raw: bytes, item: Item, source: str, now: dt.datetime) -> PurseRecord:
    row = PurseRecord(digest=hashlib.sha256(raw).hexdigest(), raw=raw, source=source[:100],
                      purse_id=raw[4:12].hex() if len(raw) >= 12 else None,
                      sam_id=item.sam_id.hex() if item.sam_id else None, sam_seq=item.sam_seq,
                      sam_mac=item.sam_mac.hex() if item.sam_mac else None, flags="", counted=False,
                      received_at=now)
    s.add(row)
    s.flush()
    return row


def _fill(row: PurseRecord, r: PurchaseRecord) -> None:
    row.counter, row.kind, row.wallet, row.amount = r.counter, int(r.kind), r.wallet, r.amount
    row.unit = int(r.unit)
    row.product, row.terminal, row.time = r.product, r.terminal.hex(), _utc(r.time)
    row.previous_balance, row.new_balance, row.key_version = r.previous_balance, r.new_balance, r.key_version


class _Check:
    """One stored record going through the checks; raises flags on it."""

    def __init__(self, s: Session, row: PurseRecord, report: IngestReport, now: dt.datetime) -> None:
        self.s, self.row, self.report, self.now = s, row, report, now

    def flag(self, name: str, detail: str = "") -> None:
        flag(self.s, name, now=self.now, purse_id=self.row.purse_id, record_id=self.row.id, detail=detail)
        self.row.flags = ",".join(filter(None, [self.row.flags, name]))[:200]
        self.report.add(name)


def _signature(c: _Check, issuer: IssuerKeys, raw: bytes, r: PurchaseRecord) -> bool:
    try:
        key = issuer.card_key(r.card_id, Purpose.RECORD, r.key_version)
    except PurseKeyMissing:
        c.flag("bad_signature", "no record key of this version")
        return False
    if not verify_mac(key, raw[:RECORD_LEN], raw[RECORD_LEN:]):
        c.flag("bad_signature")
        return False
    if issuer.retired(Purpose.RECORD, r.key_version):
        c.flag("retired_key", f"record key version {r.key_version}")
    return True


def _sam(c: _Check, issuer: IssuerKeys, raw: bytes, item: Item) -> bool:
    """The SAM's MAC and sequence checked (flagged when not good); whether they were good."""
    if item.sam_id is None:
        return False
    sam = c.s.get(PurseSam, item.sam_id.hex())
    if sam is None or sam.status != "active":
        c.flag("sam_unknown", "" if sam is None else f"SAM {sam.status}")
        return False
    seq = item.sam_seq
    if seq is None or item.sam_mac is None or len(item.sam_mac) != MAC_LEN or not 0 < seq < 2**32:
        c.flag("sam_mac_bad", "no SAM sequence or MAC")
        return False
    # the SAM's MAC RECORD: AES-CMAC under its SAM key over the signed record then the sequence (4 bytes)
    if not verify_sam_record_mac(issuer.sam_key(item.sam_id, sam.key_version), raw, seq, item.sam_mac):
        c.flag("sam_mac_bad")
        return False
    if seq > sam.last_seq + 1:
        c.flag("sam_seq_gap", f"SAM sequence {sam.last_seq + 1}..{seq - 1} missing")
    sam.last_seq = max(sam.last_seq, seq)
    return True


def _late_sam(s: Session, issuer: IssuerKeys, row: PurseRecord, item: Item, report: IngestReport,
              now: dt.datetime) -> None:
    """A record received before without a SAM's MAC (the card's log, read at another terminal's contact)
    that comes again from its own terminal with its SAM's MAC and sequence: that sequence is recorded (so
    the SAM's next record shows no gap) and the MAC kept on the stored record; nothing is counted again."""
    if item.sam_id is None or row.sam_mac is not None:
        return
    if _sam(_Check(s, row, report, now), issuer, row.raw, item) and item.sam_mac is not None:
        row.sam_id, row.sam_seq, row.sam_mac = item.sam_id.hex(), item.sam_seq, item.sam_mac.hex()
        s.flush()


def status_at(s: Session, card: Card, when: dt.datetime) -> str:
    """The card's status at `when`, from its audited moves (registry.fleet.cards.move): the last move
    until then, else what the first move after it found, else its status now."""
    moves = list(s.scalars(select(AuditEntry).where(AuditEntry.subject == f"card:{card.id}",
                                                    AuditEntry.action.like("card.%"))
                           .order_by(AuditEntry.at, AuditEntry.id)))
    found = card.status
    for entry in reversed(moves):
        detail = json.loads(entry.detail or "{}")
        if entry.at <= when and isinstance(detail.get("after"), str):
            return str(detail["after"])
        if entry.at > when and isinstance(detail.get("before"), str):
            found = str(detail["before"])
    return found


def _stop_listed(c: _Check, purse: ChipPurse, r: PurchaseRecord) -> None:
    card = c.s.get(Card, purse.card_id)
    if card is None:
        return
    then = status_at(c.s, card, _utc(r.time))
    if then in STOP_LIST:
        c.flag("stop_listed_offline", f"card {then}")


def _count(c: _Check, issuer: IssuerKeys, raw: bytes, r: PurchaseRecord, item: Item) -> None:
    s, row = c.s, c.row
    purse = purse_by_id(s, r.card_id)
    if purse is None:
        c.flag("unknown_purse")
        return
    s.refresh(purse)
    counted_key = f"{purse.purse_id}:{r.counter}"
    if s.scalars(select(PurseRecord.id).where(PurseRecord.counted_key == counted_key)).first():
        c.flag("replay", f"counter {r.counter}")
        return
    wallet = chip_wallet(s, purse, r.wallet)
    if wallet is None:
        c.flag("unknown_wallet", f"wallet {r.wallet}")
        return
    if wallet_unit(wallet) is not r.unit:
        c.flag("unit_mismatch", f"wallet {r.wallet}")
        return
    gap = unexplained(s, purse, purse.last_counter, r.counter)
    if gap:
        c.flag("counter_gap", f"{gap} counters missing before {r.counter}")
    in_sequence = r.counter > purse.last_record_counter and not unexplained(
        s, purse, purse.last_record_counter, r.counter)
    grant = None
    if r.kind is Kind.LOAD:
        grant = _grant_for(s, purse, r)
        if grant is None:
            c.flag("unknown_load", f"no load granted at counter {r.counter - 1}")
            return
    row.counted, row.counted_key = True, counted_key
    s.flush()                                          # a counter counted meanwhile fails here
    # the shadow a record at this counter started from: the shadow less the loads the card applies after
    settle_by_records(s, purse, now=c.now)
    if in_sequence:
        s.refresh(wallet, ["balance"])
        expected = wallet.balance - booked_after(s, purse, r.wallet, r.counter)
        if r.previous_balance != expected:
            c.flag("balance_mismatch", f"card {r.previous_balance}, shadow {expected}")
    if r.kind is Kind.LOAD:
        if grant is not None and grant.status == "reversed":
            rebook_grant(s, grant, row, now=c.now)
            c.flag("load_after_reversal", f"load {grant.load_id}")
    else:
        key = f"purse:{purse.purse_id}:{r.counter}"
        ledger.post(s, wallet, "chip_sale", -r.amount, key=key, at=_utc(r.time), actor="purse",
                    reason=f"chip wallet {r.wallet} counter {r.counter}")
        row.movement_key = key
        _stop_listed(c, purse, r)
    purse.last_counter = max(purse.last_counter, r.counter)
    purse.last_record_counter = max(purse.last_record_counter, r.counter)
    _sam(c, issuer, raw, item)
    c.report.counted += 1


def _grant_for(s: Session, purse: ChipPurse, r: PurchaseRecord) -> PurseLoad | None:
    """The grant a LOAD record applies: the card's counter before it, same wallet and amount."""
    return s.scalars(select(PurseLoad).where(
        PurseLoad.purse_id == purse.id, PurseLoad.counter == r.counter - 1, PurseLoad.wallet == r.wallet,
        PurseLoad.amount == r.amount).order_by(PurseLoad.status != "reversed", PurseLoad.requested_at)
    ).first()


def _lock(s: Session, raw: bytes) -> None:
    """Take the lock of the record's account first (ledger.lock_account: a row lock on PostgreSQL, the
    write lock on SQLite), so that the duplicate check below and the insert see the same rows, and records,
    loads and scripts of one account take turns in one order (account, then purse)."""
    purse = purse_by_id(s, raw[4:12]) if len(raw) >= 12 else None
    card = s.get(Card, purse.card_id) if purse is not None else None
    if card is not None and card.account_id is not None:
        ledger.lock_account(s, card.account_id)
    else:                   # no account: on SQLite this still takes the write lock; nothing on PostgreSQL
        s.execute(update(ChipPurse).where(ChipPurse.id == -1).values(last_counter=ChipPurse.last_counter)
                  .execution_options(synchronize_session=False))


def _one(s: Session, issuer: IssuerKeys, item: Item, report: IngestReport, source: str,
         now: dt.datetime) -> None:
    raw = bytes(item.record)
    _lock(s, raw)
    digest = hashlib.sha256(raw).hexdigest()
    found = s.scalars(select(PurseRecord).where(PurseRecord.digest == digest)).first()
    if found is not None:
        report.duplicate += 1
        _late_sam(s, issuer, found, item, report, now)
        return
    row = _store(s, raw, item, source, now)
    report.stored += 1
    check = _Check(s, row, report, now)
    try:
        if len(raw) != SIGNED_LEN:
            raise RecordError("a signed record is 60 bytes", reason="length")
        record = decode(raw[:RECORD_LEN])
    except RecordError as exc:
        check.flag("malformed", exc.reason)
        return
    _fill(row, record)
    if _signature(check, issuer, raw, record):
        _count(check, issuer, raw, record, item)
    else:
        _sam(check, issuer, raw, item)
    s.flush()


def ingest(s: Session, issuer: IssuerKeys, items: Sequence[Item], *, source: str,
           now: dt.datetime) -> IngestReport:
    """Store and check each item (see the module docstring); the caller commits. now: naive UTC."""
    report = IngestReport()
    # SQLite: pysqlite opens no transaction before a SAVEPOINT, whose RELEASE then commits; and its one
    # writer at a time never meets a concurrent insert here (a stale snapshot fails as "locked" instead)
    nested = s.get_bind().dialect.name != "sqlite"
    for item in items:
        for attempt in (1, 2):
            part = IngestReport()
            try:
                with s.begin_nested() if nested else contextlib.nullcontext():
                    _one(s, issuer, item, part, source, now)
            except IntegrityError:
                if attempt == 2 or not nested:
                    raise
                continue                               # met a concurrent insert: read it again
            report.counted += part.counted
            report.duplicate += part.duplicate
            report.stored += part.stored
            for name, n in part.flags.items():
                report.flags[name] = report.flags.get(name, 0) + n
            break
    return report
