"""The sale journal: every state change is written (WAL, synchronous=FULL) before the terminal acts on it.

A sale row holds the latest state; the events table keeps each transition in order. Rows hold the masked
card number and a keyed token only, never a full card number or a PIN block.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import JournalError

__all__ = ["OPEN_STATES", "STATES", "Journal", "SaleRecord"]

# created -> authorizing -> declined | approved -> pump_authorized -> completed ; completed rows get
# receipt_printed then synced set. "failed" ends a sale nothing was dispensed for.
STATES = ("created", "authorizing", "declined", "approved", "pump_authorized", "completed", "failed")
OPEN_STATES = ("approved", "pump_authorized")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, pump INTEGER NOT NULL,
    card_masked TEXT NOT NULL, card_token TEXT NOT NULL,
    auth_id TEXT, allowed_cl INTEGER, nozzles TEXT,
    kind TEXT NOT NULL DEFAULT 'fleet', allowed_cents INTEGER, bank TEXT,
    nozzle INTEGER, product TEXT, volume_cl INTEGER, amount_cents INTEGER, price_milli INTEGER,
    totals_before TEXT, reason TEXT, flags TEXT NOT NULL DEFAULT '[]', recovered INTEGER NOT NULL DEFAULT 0,
    receipt_started INTEGER NOT NULL DEFAULT 0, receipt_printed INTEGER NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sale_id TEXT NOT NULL, state TEXT NOT NULL,
    at REAL NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Columns added after the first release: (name, declaration) for ALTER TABLE on an older journal.
_ADDED = (("kind", "TEXT NOT NULL DEFAULT 'fleet'"), ("allowed_cents", "INTEGER"), ("bank", "TEXT"))

_FIELDS = ("auth_id", "allowed_cl", "allowed_cents", "bank", "nozzles", "nozzle", "product", "volume_cl",
           "amount_cents", "price_milli", "totals_before", "reason", "flags", "recovered", "finished_at")


@dataclass(frozen=True)
class SaleRecord:
    id: str
    state: str
    pump: int
    card_masked: str
    card_token: str
    kind: str                   # "fleet" or "bank"
    auth_id: str | None
    allowed_cl: int | None
    allowed_cents: int | None   # a bank pre-authorization: the pump is preset to this amount
    # bank sale summary (AID, label, entry mode, CVM, TVR/TSI, codes); never a PAN
    bank: dict[str, Any] | None
    nozzles: tuple[int, ...]
    nozzle: int | None
    product: str | None
    volume_cl: int | None
    amount_cents: int | None
    price_milli: int | None
    totals_before: dict[int, tuple[int, int]] | None   # nozzle -> (volume_cl, amount_cents)
    reason: str | None
    flags: tuple[str, ...]
    recovered: bool
    receipt_started: bool       # a print was begun: if not also printed, a reprint is a duplicate
    receipt_printed: bool
    synced: bool
    created_at: float
    finished_at: float | None


class Journal:
    """SQLite-backed journal; safe to share between the terminal's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(sales)")}
            for name, decl in _ADDED:
                if name not in have:
                    self._db.execute(f"ALTER TABLE sales ADD COLUMN {name} {decl}")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError("cannot open journal", path=str(self.path)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...], sale_id: str, state: str,
               detail: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(sql, args)
                if cur.rowcount != 1:
                    raise JournalError("no such sale", sale_id=sale_id)
                self._db.execute("INSERT INTO events (sale_id, state, at, detail) VALUES (?, ?, ?, ?)",
                                 (sale_id, state, time.time(), json.dumps(detail, sort_keys=True)))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise JournalError("journal write failed", sale_id=sale_id) from exc
            except JournalError:
                self._db.execute("ROLLBACK")
                raise

    def begin_sale(self, sale_id: str, pump: int, card_masked: str, card_token: str,
                   kind: str = "fleet") -> None:
        if kind not in ("fleet", "bank"):
            raise JournalError("unknown sale kind", kind=kind)
        self._write("INSERT INTO sales (id, state, pump, card_masked, card_token, kind, created_at) "
                    "VALUES (?, 'created', ?, ?, ?, ?, ?)",
                    (sale_id, pump, card_masked, card_token, kind, time.time()), sale_id, "created",
                    {"pump": pump, "kind": kind})

    def transition(self, sale_id: str, state: str, **fields: Any) -> None:
        """Move a sale to state and set fields, in one transaction with its event row."""
        if state not in STATES:
            raise JournalError("unknown state", state=state)
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise JournalError("unknown journal fields", fields=",".join(sorted(unknown)))
        stored = {k: (json.dumps(list(v)) if k in ("nozzles", "flags") else v) for k, v in fields.items()}
        if fields.get("bank") is not None:
            stored["bank"] = json.dumps(fields["bank"], sort_keys=True)
        if fields.get("totals_before") is not None:
            stored["totals_before"] = json.dumps({str(n): list(t)
                                                  for n, t in fields["totals_before"].items()})
        sets = ", ".join(["state = ?"] + [f"{k} = ?" for k in stored])
        self._write(f"UPDATE sales SET {sets} WHERE id = ?", (state, *stored.values(), sale_id),
                    sale_id, state, {k: (v if k not in ("totals_before", "bank") else stored[k])
                                     for k, v in fields.items() if k != "reason"})

    def mark(self, sale_id: str, flag: str) -> None:
        """Set receipt_started (before printing), receipt_printed (after) or synced."""
        if flag not in ("receipt_started", "receipt_printed", "synced"):
            raise JournalError("unknown mark", flag=flag)
        state = self.get(sale_id).state
        self._write(f"UPDATE sales SET {flag} = 1 WHERE id = ?", (sale_id,), sale_id, state, {flag: True})

    def get(self, sale_id: str) -> SaleRecord:
        rows = self._select("WHERE id = ?", (sale_id,))
        if not rows:
            raise JournalError("no such sale", sale_id=sale_id)
        return rows[0]

    def open_sales(self) -> list[SaleRecord]:
        """Sales approved but not completed: the pump may hold fuel that is not yet settled."""
        marks = ",".join("?" * len(OPEN_STATES))
        return self._select(f"WHERE state IN ({marks}) ORDER BY created_at", OPEN_STATES)

    def unprinted(self) -> list[SaleRecord]:
        return self._select("WHERE state = 'completed' AND receipt_printed = 0 AND volume_cl > 0 "
                            "ORDER BY created_at", ())

    def unsynced(self) -> list[SaleRecord]:
        return self._select("WHERE state = 'completed' AND synced = 0 ORDER BY created_at", ())

    def sales_in(self, *states: str) -> list[SaleRecord]:
        marks = ",".join("?" * len(states))
        return self._select(f"WHERE state IN ({marks}) ORDER BY created_at", states)

    def all_sales(self) -> list[SaleRecord]:
        return self._select("ORDER BY created_at", ())

    def events(self, sale_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT state, detail FROM events WHERE sale_id = ? ORDER BY seq",
                                    (sale_id,)).fetchall()
        return [(s, json.loads(d)) for s, d in rows]

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def get_value(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _select(self, where: str, args: tuple[Any, ...]) -> list[SaleRecord]:
        with self._lock:
            cur = self._db.execute(f"SELECT * FROM sales {where}", args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        return [_record(r) for r in rows]


def _record(r: dict[str, Any]) -> SaleRecord:
    return SaleRecord(
        id=r["id"], state=r["state"], pump=r["pump"], card_masked=r["card_masked"],
        card_token=r["card_token"], kind=r["kind"], auth_id=r["auth_id"], allowed_cl=r["allowed_cl"],
        allowed_cents=r["allowed_cents"], bank=json.loads(r["bank"]) if r["bank"] else None,
        nozzles=tuple(json.loads(r["nozzles"] or "[]")), nozzle=r["nozzle"], product=r["product"],
        volume_cl=r["volume_cl"], amount_cents=r["amount_cents"], price_milli=r["price_milli"],
        totals_before=_totals(r["totals_before"]), reason=r["reason"], flags=tuple(json.loads(r["flags"])),
        recovered=bool(r["recovered"]), receipt_started=bool(r["receipt_started"]),
        receipt_printed=bool(r["receipt_printed"]), synced=bool(r["synced"]),
        created_at=r["created_at"], finished_at=r["finished_at"])


def _totals(raw: str | None) -> dict[int, tuple[int, int]] | None:
    if raw is None:
        return None
    return {int(n): (int(t[0]), int(t[1])) for n, t in json.loads(raw).items()}
