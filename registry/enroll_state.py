"""Enrollment state in the database (table enrollment_requests), so every registry host sees one truth:
the request a device waits with (its CSR, until an operator decides), and each final reply retained on a
claim client's reply topic until the registry clears it from the broker.

A row is owed while its final answer is not on the broker (replied_at empty). One host prepares each
answer: it takes the row by a conditional UPDATE on its answer count, and the row stays its own for LEASE
(another host skips it meanwhile); a publish that fails gives the row back at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from registry.models import EnrollmentRequest

__all__ = ["LEASE", "answered", "clear", "give_back", "owed", "retained", "superseded", "take", "wait",
           "waiting"]

LEASE = dt.timedelta(seconds=60)          # a host that took a row and vanished: another takes it after this


def wait(session: Session, *, client: str, request_id: str, device_id: str, csr_pem: str,
         now: dt.datetime, status: str = "pending") -> EnrollmentRequest:
    """An owed answer: a device waiting for an operator ("pending"), or an accepted answer the broker did
    not take (sent again by the next tick). Added to the session; the caller commits."""
    row = EnrollmentRequest(client=client, request_id=request_id, device_id=device_id, csr_pem=csr_pem,
                            created_at=now, reply_status=status, answers=0)
    session.add(row)
    session.flush()
    return row


def waiting(session: Session, device_id: str, request_id: str) -> bool:
    """This request of the device still has its final answer owed (the device resumed it)."""
    return session.scalar(select(EnrollmentRequest.id).where(
        EnrollmentRequest.device_id == device_id, EnrollmentRequest.request_id == request_id,
        EnrollmentRequest.replied_at.is_(None))) is not None


def owed(session: Session, now: dt.datetime) -> list[EnrollmentRequest]:
    """The owed rows no host is publishing (never taken, given back, or taken longer than LEASE ago)."""
    return list(session.scalars(select(EnrollmentRequest).where(
        EnrollmentRequest.replied_at.is_(None),
        or_(EnrollmentRequest.prepared_at.is_(None), EnrollmentRequest.prepared_at < now - LEASE))
        .order_by(EnrollmentRequest.id)).all())


def take(session: Session, row: EnrollmentRequest, status: str, now: dt.datetime) -> bool:
    """Take an owed row to prepare its final answer (status); False when another host took it first."""
    taken = session.execute(update(EnrollmentRequest).where(
        EnrollmentRequest.id == row.id, EnrollmentRequest.answers == row.answers,
        EnrollmentRequest.replied_at.is_(None))
        .values(answers=row.answers + 1, reply_status=status, prepared_at=now)
        .execution_options(synchronize_session=False))
    count: int = taken.rowcount      # type: ignore[attr-defined]
    return count == 1


def give_back(session: Session, row_id: int) -> None:
    """Its answer did not reach the broker: free for the next tick (committed)."""
    session.execute(update(EnrollmentRequest).where(EnrollmentRequest.id == row_id,
                                                    EnrollmentRequest.replied_at.is_(None))
                    .values(prepared_at=None).execution_options(synchronize_session=False))
    session.commit()


def superseded(session: Session, client: str, now: dt.datetime) -> None:
    """A new reply on the client's topic replaces the retained one: older replies need no clearing."""
    rows = EnrollmentRequest.client == client, EnrollmentRequest.replied_at.is_not(None), \
        EnrollmentRequest.reply_cleared_at.is_(None)
    session.execute(delete(EnrollmentRequest).where(*rows, EnrollmentRequest.device_id.is_(None))
                    .execution_options(synchronize_session=False))
    session.execute(update(EnrollmentRequest).where(*rows).values(reply_cleared_at=now)
                    .execution_options(synchronize_session=False))


def answered(session: Session, *, client: str, now: dt.datetime, row_id: int | None = None,
             request_id: str = "", device_id: str | None = None, status: str = "refused") -> None:
    """The final answer is on the broker, retained: the owed row row_id, or a new row for an answer given
    at once (accepted or refused). Committed."""
    superseded(session, client, now)
    if row_id is None:
        session.add(EnrollmentRequest(client=client, request_id=request_id, device_id=device_id,
                                      created_at=now, reply_status=status, answers=1, prepared_at=now,
                                      replied_at=now))
    else:
        session.execute(update(EnrollmentRequest).where(EnrollmentRequest.id == row_id)
                        .values(replied_at=now, csr_pem=None).execution_options(synchronize_session=False))
    session.commit()


def retained(session: Session) -> list[EnrollmentRequest]:
    """The final replies on the broker not cleared yet, oldest first."""
    return list(session.scalars(select(EnrollmentRequest).where(
        EnrollmentRequest.replied_at.is_not(None), EnrollmentRequest.reply_cleared_at.is_(None))
        .order_by(EnrollmentRequest.id)).all())


def clear(session: Session, row: EnrollmentRequest, now: dt.datetime) -> None:
    """Its retained reply is cleared: a device's row is kept (when), a refusal that made none is dropped.
    Another host clearing it too changes nothing more (committed)."""
    if row.device_id is None:
        session.execute(delete(EnrollmentRequest).where(EnrollmentRequest.id == row.id)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(update(EnrollmentRequest).where(EnrollmentRequest.id == row.id,
                                                        EnrollmentRequest.reply_cleared_at.is_(None))
                        .values(reply_cleared_at=now).execution_options(synchronize_session=False))
    session.commit()
