"""Store-and-forward of acquirer advices (0220 completions, 0420 reversals) the host has not acknowledged.

An advice must reach the acquirer even if the terminal restarts, so it is written to its own SQLite
file (WAL, synchronous=FULL) before the first send. The advice holds the PAN (the acquirer needs it),
so each message is stored encrypted with AES-256-GCM (random 96-bit nonce, the row's kind and sale id
as associated data) under a key given to the constructor; after the host's acknowledgement the
ciphertext is erased. Messages are never logged, only ids, kinds and sale ids.

A message that may already have reached the host is sent again as a repeat (0221/0421, ISO 8583:1987
MTI position 4 = 1): the attempt is counted durably *before* each send.

Between the pre-authorization and its advice, a sale's card context (the card data the advice will be
built from) is kept in a second table of the same file, sealed the same way (associated data
"context" and the sale id), so it survives a restart without being written to the journal in clear.
settle() queues the advice and erases the context in one transaction.
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.errors import ConfigError, HostUnavailable, MessageError, SyncError
from firmware.acquirer import messages

__all__ = ["MAX_REFUSALS", "AdviceKind", "Exchanger", "ForwardReport", "PendingAdvice", "StoreAndForward"]

# An advice the acquirer refuses this many times (a format error, an unknown original) stops being sent:
# repeating it cannot change the answer. It stays in the file, encrypted, for an operator (parked()).
MAX_REFUSALS = 5

log = logging.getLogger(__name__)

_ADVICE_TABLE = """
CREATE TABLE IF NOT EXISTS advice (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('completion', 'reversal')),
    sale_id TEXT NOT NULL,
    nonce BLOB,
    sealed BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    refusals INTEGER NOT NULL DEFAULT 0,
    last_response TEXT,
    created REAL NOT NULL,
    acked REAL,
    UNIQUE (sale_id, kind)
)
"""

# One row per sale between pre-authorization and advice; id keeps the order of the first hold().
_CONTEXT_TABLE = """
CREATE TABLE IF NOT EXISTS card_context (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sale_id TEXT NOT NULL UNIQUE,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


class AdviceKind(enum.StrEnum):
    COMPLETION = "completion"
    REVERSAL = "reversal"


_MTI = {AdviceKind.COMPLETION: b"0220", AdviceKind.REVERSAL: b"0420"}


class Exchanger(Protocol):
    def exchange(self, raw: bytes, timeout: float | None = None) -> bytes: ...


@dataclass(frozen=True)
class PendingAdvice:
    id: int
    kind: AdviceKind
    sale_id: str
    attempts: int
    last_response: str | None
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class ForwardReport:
    acked: int = 0
    refused: int = 0
    parked: int = 0        # refused MAX_REFUSALS times: kept for an operator, no longer sent
    stopped: bool = False  # the host became unreachable; the rest waits for the next forward()


class StoreAndForward:
    """Durable advice queue; thread-safe."""

    def __init__(self, path: str | Path, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ConfigError("store-and-forward key must be an AES key (16, 24 or 32 bytes)",
                              length=len(key))
        self._aead = AESGCM(key)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")    # erased card data leaves no free-page copy
            self._db.execute(_ADVICE_TABLE)
            self._db.execute(_CONTEXT_TABLE)
            if "refusals" not in {row[1] for row in self._db.execute("PRAGMA table_info(advice)")}:
                self._db.execute("ALTER TABLE advice ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0")
        except sqlite3.Error as exc:
            raise SyncError("cannot open the store-and-forward file", path=str(path)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _aad(kind: str, sale_id: str) -> bytes:
        return f"forecourt-saf\x00{kind}\x00{sale_id}".encode()

    @staticmethod
    def _context_aad(sale_id: str) -> bytes:
        return b"forecourt-saf\x00context\x00" + sale_id.encode()

    def enqueue(self, kind: AdviceKind | str, sale_id: str, raw: bytes) -> int:
        """Store an advice for a sale; a second call for the same sale and kind returns the first id."""
        return self._store_advice(kind, sale_id, raw, settle=False)

    def settle(self, kind: AdviceKind | str, sale_id: str, raw: bytes) -> int:
        """enqueue() the advice and erase the sale's card context, in one transaction."""
        return self._store_advice(kind, sale_id, raw, settle=True)

    def _store_advice(self, kind: AdviceKind | str, sale_id: str, raw: bytes, *, settle: bool) -> int:
        kind = AdviceKind(kind)
        if raw[:4] != _MTI[kind]:
            raise MessageError("advice does not match its kind", kind=kind.value, mti=raw[:4].hex())
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, bytes(raw), self._aad(kind, sale_id))
        with self._lock, self._tx():
            row = self._db.execute("SELECT id FROM advice WHERE sale_id = ? AND kind = ?",
                                   (sale_id, kind.value)).fetchone()
            if row is None:
                cur = self._db.execute(
                    "INSERT INTO advice (kind, sale_id, nonce, sealed, created) VALUES (?, ?, ?, ?, ?)",
                    (kind.value, sale_id, nonce, sealed, time.time()))
                advice_id, stored = int(cur.lastrowid or 0), True
            else:
                advice_id, stored = int(row[0]), False
            erased = settle and self._db.execute(
                "DELETE FROM card_context WHERE sale_id = ?", (sale_id,)).rowcount > 0
        if stored:
            log.info("advice stored", extra={"advice_id": advice_id, "kind": kind.value, "sale_id": sale_id})
        if erased:
            log.info("card context erased", extra={"sale_id": sale_id, "advice_id": advice_id})
        return advice_id

    def has_advice(self, sale_id: str, kind: AdviceKind | str | None = None) -> bool:
        """Whether an advice (of this kind, or any) was stored for the sale, acknowledged or not."""
        query, args = "SELECT 1 FROM advice WHERE sale_id = ?", [sale_id]
        if kind is not None:
            query, args = query + " AND kind = ?", [sale_id, AdviceKind(kind).value]
        with self._lock:
            return self._db.execute(query, args).fetchone() is not None

    def hold(self, sale_id: str, context: bytes) -> None:
        """Store (or replace) the sale's card context, durably, until settle() or drop()."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, bytes(context), self._context_aad(sale_id))
        now = time.time()
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO card_context (sale_id, nonce, sealed, created, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (sale_id) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed, "
                "updated = excluded.updated",
                (sale_id, nonce, sealed, now, now))
        log.info("card context held", extra={"sale_id": sale_id})

    def held(self, sale_id: str) -> bytes | None:
        """The sale's card context, or None if none is held."""
        with self._lock:
            row = self._db.execute("SELECT nonce, sealed FROM card_context WHERE sale_id = ?",
                                   (sale_id,)).fetchone()
        if row is None:
            return None
        try:
            return self._aead.decrypt(row[0], row[1], self._context_aad(sale_id))
        except (InvalidTag, TypeError, ValueError):
            raise SyncError("stored card context cannot be decrypted (wrong key or damaged file)",
                            sale_id=sale_id) from None

    def held_sales(self) -> list[str]:
        """Sales with a card context, oldest first (by their first hold())."""
        with self._lock:
            rows = self._db.execute("SELECT sale_id FROM card_context ORDER BY id").fetchall()
        return [str(row[0]) for row in rows]

    def drop(self, sale_id: str) -> None:
        """Erase the sale's card context; nothing happens if none is held."""
        with self._lock, self._tx():
            cur = self._db.execute("DELETE FROM card_context WHERE sale_id = ?", (sale_id,))
        if cur.rowcount:
            log.info("card context erased", extra={"sale_id": sale_id})

    def pending(self, *, parked: bool = False) -> list[PendingAdvice]:
        """Unacknowledged advices still to send, oldest first; parked=True: those given up on instead."""
        where = "refusals >= ?" if parked else "refusals < ?"
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, sale_id, nonce, sealed, attempts, last_response FROM advice "
                f"WHERE acked IS NULL AND {where} ORDER BY id", (MAX_REFUSALS,)).fetchall()
        out = []
        for advice_id, kind, sale_id, nonce, sealed, attempts, last in rows:
            try:
                raw = self._aead.decrypt(nonce, sealed, self._aad(kind, sale_id))
            except (InvalidTag, TypeError, ValueError):
                raise SyncError("stored advice cannot be decrypted (wrong key or damaged file)",
                                advice_id=advice_id) from None
            out.append(PendingAdvice(advice_id, AdviceKind(kind), sale_id, attempts, last, raw))
        return out

    def mark_acked(self, advice_id: int) -> None:
        """The host acknowledged it: keep the row for the record, erase the message."""
        with self._lock, self._tx():
            cur = self._db.execute(
                "UPDATE advice SET acked = ?, nonce = NULL, sealed = NULL WHERE id = ? AND acked IS NULL",
                (time.time(), advice_id))
            if cur.rowcount == 0:
                known = self._db.execute("SELECT 1 FROM advice WHERE id = ?", (advice_id,)).fetchone()
                if known is None:
                    raise SyncError("no such advice", advice_id=advice_id)

    def _attempt(self, advice_id: int) -> None:
        with self._lock, self._tx():
            self._db.execute("UPDATE advice SET attempts = attempts + 1 WHERE id = ?", (advice_id,))

    def _refused(self, advice_id: int, code: str) -> bool:
        """Record a refusal; True when the advice is now parked."""
        with self._lock, self._tx():
            self._db.execute("UPDATE advice SET last_response = ?, refusals = refusals + 1 WHERE id = ?",
                             (code, advice_id))
            row = self._db.execute("SELECT refusals FROM advice WHERE id = ?", (advice_id,)).fetchone()
        return bool(row and row[0] >= MAX_REFUSALS)

    def forward(self, link: Exchanger, timeout: float | None = None,
                stop: Callable[[], bool] = lambda: False,
                dialect: messages.Dialect = messages.DIALECT) -> ForwardReport:
        """Send every pending advice in order; stop at the first sign the host is unreachable, or when
        stop() says the terminal is shutting down (the rest waits in the file)."""
        acked = refused = parked = 0
        for item in self.pending():
            if stop():
                break
            raw = messages.as_repeat(item.raw) if item.attempts else item.raw
            self._attempt(item.id)
            try:
                answer = link.exchange(raw, timeout)
                parse = (messages.parse_completion_response if item.kind is AdviceKind.COMPLETION
                         else messages.parse_reversal_response)
                response = parse(answer, dialect)
            except (HostUnavailable, MessageError) as exc:
                log.warning("advice forwarding stopped",
                            extra={"advice_id": item.id, "kind": item.kind.value,
                                   "error": type(exc).__name__})
                return ForwardReport(acked, refused, parked, stopped=True)
            if response.acknowledged:
                self.mark_acked(item.id)
                acked += 1
            else:  # keep it for the next round and for an operator; do not block the queue
                refused += 1
                if self._refused(item.id, response.response_code):
                    parked += 1
                    log.error("advice refused too often; parked for an operator",
                              extra={"advice_id": item.id, "sale_id": item.sale_id,
                                     "response_code": response.response_code})
                else:
                    log.warning("advice refused by the acquirer",
                                extra={"advice_id": item.id, "response_code": response.response_code})
        return ForwardReport(acked, refused, parked)

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK); sqlite3 errors become SyncError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SyncError("store-and-forward file is not writable") from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                raise SyncError("store-and-forward commit failed") from err
        else:
            if self._db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SyncError("store-and-forward write failed") from exc
