"""The sale journal, one for every program: each state change is written (WAL, synchronous=FULL) before
the terminal acts on it.

A sale row holds the latest state, the program's name and its own data as one JSON document; the events
table keeps each move in order. Rows hold the masked card number and a keyed token only, never a full
card number or a PIN block (a bank card's data that must outlive the sale stays encrypted in the
program's own store).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.errors import JournalError
from contracts.reasons import parse_reason
from firmware.keyfile import private_database
from firmware.sale.journal_schema import migrate
from firmware.sale.machine import OPEN_STATES, SaleState, check_move
from firmware.sale.record import Preset, SaleRecord

log = logging.getLogger(__name__)

__all__ = ["Journal"]

# A completed sale is one the registry is sent: it gets the terminal's next number (seq 1, 2, 3...) in the
# transaction that completes it, once; a gap in the numbers the registry holds is a sale not received.
_NEXT_SEQ = "seq = COALESCE(seq, (SELECT COALESCE(MAX(seq), 0) + 1 FROM sales))"
_JSON_FIELDS = ("data", "adjuncts", "nozzles", "flags", "totals_before")
_FIELDS = ("preset", "nozzles", "reference", "data", "adjuncts", "nozzle", "product", "volume_cl",
           "amount_cents", "charged_cents", "price_milli", "totals_before", "reason", "flags", "recovered",
           "finished_at")


class Journal:
    """SQLite-backed journal; safe to share between the terminal's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(private_database(self.path)), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            migrate(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError("cannot open journal", path=str(self.path)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...], sale_id: str, state: str, detail: dict[str, Any],
               expect: SaleState | None = None) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if expect is not None:
                    row = self._db.execute("SELECT state FROM sales WHERE id = ?", (sale_id,)).fetchone()
                    if row is None:
                        raise JournalError("no such sale", sale_id=sale_id)
                    check_move(SaleState(row[0]), expect)
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

    def begin_sale(self, sale_id: str, pump: int, card_masked: str, card_token: str, *, program: str,
                   adjuncts: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._write("INSERT INTO sales (id, state, pump, program, card_masked, card_token, adjuncts, "
                    "created_at) VALUES (?, 'created', ?, ?, ?, ?, ?, ?)",
                    (sale_id, pump, program, card_masked, card_token, json.dumps(adjuncts or {}),
                     time.time()),
                    sale_id, "created", {"pump": pump, "program": program})

    def transition(self, sale_id: str, state: SaleState, **fields: Any) -> None:
        """Move a sale to state (a move the sale machine has) and set fields, with its event row."""
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise JournalError("unknown journal fields", fields=",".join(sorted(unknown)))
        stored = {k: _store(k, v) for k, v in fields.items() if k != "preset"}
        if "preset" in fields:
            preset: Preset | None = fields["preset"]
            stored["preset_kind"] = preset.kind if preset else None
            stored["preset_value"] = preset.value if preset else None
        sets = ", ".join(["state = ?"] + [f"{k} = ?" for k in stored] + (
            [_NEXT_SEQ] if state is SaleState.COMPLETED else []))
        detail = {k: v for k, v in stored.items() if k not in ("reason",)}
        if "reason" in fields:
            detail["reason"] = str(fields["reason"])
        self._write(f"UPDATE sales SET {sets} WHERE id = ?", (state.value, *stored.values(), sale_id),
                    sale_id, state.value, detail, expect=state)

    def flag(self, sale_id: str, flag: str) -> None:
        """Add a flag (attendant_check, ...) to a sale without moving it."""
        rec = self.get(sale_id)
        if flag not in rec.flags:
            self.transition(sale_id, rec.state, flags=[*rec.flags, flag])

    def mark(self, sale_id: str, flag: str) -> None:
        """Set receipt_started (before printing), receipt_printed (after) or synced."""
        if flag not in ("receipt_started", "receipt_printed", "synced"):
            raise JournalError("unknown mark", flag=flag)
        state = self.get(sale_id).state
        self._write(f"UPDATE sales SET {flag} = 1 WHERE id = ?", (sale_id,), sale_id, state.value,
                    {flag: True})

    def get(self, sale_id: str) -> SaleRecord:
        rows = self._select("WHERE id = ?", (sale_id,), strict=True)
        if not rows:
            raise JournalError("no such sale", sale_id=sale_id)
        return rows[0]

    def open_sales(self) -> list[SaleRecord]:
        """Sales approved but not completed: the pump may hold fuel that is not yet settled."""
        return self.sales_in(*OPEN_STATES)

    def unprinted(self) -> list[SaleRecord]:
        return self._select("WHERE state = 'completed' AND receipt_printed = 0 AND volume_cl > 0 "
                            "ORDER BY created_at", ())

    def unsynced(self) -> list[SaleRecord]:
        """Completed sales the registry has not acknowledged; a parked one waits for an operator instead."""
        return self._select("WHERE state = 'completed' AND synced = 0 AND parked IS NULL ORDER BY created_at",
                            ())

    def park(self, sale_id: str, reason: str) -> bool:
        """Set a sale the registry rejected aside, with its reason; False when it was parked already."""
        state = self.get(sale_id).state
        if self.parked_reason(sale_id) is not None:
            return False
        self._write("UPDATE sales SET parked = ? WHERE id = ?", (reason, sale_id), sale_id, state.value,
                    {"parked": reason})
        return True

    def parked_reason(self, sale_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT parked FROM sales WHERE id = ?", (sale_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def parked(self) -> list[SaleRecord]:
        """Sales the registry rejected: for an operator, never resent."""
        return self._select("WHERE parked IS NOT NULL ORDER BY created_at", ())

    def sales_in(self, *states: SaleState) -> list[SaleRecord]:
        marks = ",".join("?" * len(states))
        return self._select(f"WHERE state IN ({marks}) ORDER BY created_at", tuple(s.value for s in states))

    def all_sales(self) -> list[SaleRecord]:
        return self._select("ORDER BY created_at", ())

    def completed_after(self, seq: int) -> list[SaleRecord]:
        """Completed sales numbered after seq, in number order (a shift's sales, firmware.attendant)."""
        return self._select("WHERE state = 'completed' AND seq > ? ORDER BY seq", (seq,))

    def events(self, sale_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT state, detail FROM events WHERE sale_id = ? ORDER BY seq",
                                    (sale_id,)).fetchall()
        try:
            return [(s, json.loads(d)) for s, d in rows]
        except (ValueError, TypeError, RecursionError) as exc:    # UnicodeDecodeError is a ValueError
            raise JournalError("journal event is damaged", sale_id=sale_id) from exc

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def put_many(self, puts: Mapping[str, str], deletes: tuple[str, ...] = ()) -> None:
        """Several key-value writes (and deletes) in one transaction: all of them, or none."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                                     "SET value = excluded.value", list(puts.items()))
                self._db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError("journal write failed") from exc

    def get_value(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def values(self, prefix: str) -> dict[str, str]:
        """Every key-value pair whose key starts with prefix (a queue kept in the kv table)."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                                    (len(prefix), prefix)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def _select(self, where: str, args: tuple[Any, ...], *, strict: bool = False) -> list[SaleRecord]:
        """The rows as records. A damaged row raises JournalError when strict; in a list it is left out
        (and stays on disk) with an alarm, so one bad row cannot stop the recovery or sync of the others."""
        with self._lock:
            cur = self._db.execute(f"SELECT * FROM sales {where}", args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        out = []
        for r in rows:
            try:
                out.append(_record(r))
            except JournalError:
                if strict:
                    raise
                log.error("journal row damaged; left out", extra={"alarm": "journal_row", "sale_id": r["id"]})
        return out


def _store(key: str, value: Any) -> Any:
    if key == "totals_before" and value is not None:
        return json.dumps({str(n): list(t) for n, t in value.items()})
    if key in ("nozzles", "flags"):
        return json.dumps(list(value))
    if key in _JSON_FIELDS:
        return json.dumps(value, sort_keys=True)
    if key == "reason" and value is not None:
        return str(value)
    return value


def _record(r: dict[str, Any]) -> SaleRecord:
    """A row as a record; JournalError when a column does not hold what the journal wrote there."""
    try:
        return _fields(r)
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError) as exc:
        raise JournalError("journal row is damaged", sale_id=str(r.get("id"))) from exc


def _fields(r: dict[str, Any]) -> SaleRecord:
    preset = Preset(r["preset_kind"], r["preset_value"]) if r["preset_kind"] else None
    return SaleRecord(
        id=r["id"], state=SaleState(r["state"]), pump=r["pump"], program=r["program"],
        card_masked=r["card_masked"], card_token=r["card_token"], preset=preset,
        nozzles=tuple(json.loads(r["nozzles"] or "[]")), reference=r["reference"],
        data=json.loads(r["data"] or "{}"), adjuncts=json.loads(r["adjuncts"] or "{}"),
        nozzle=r["nozzle"], product=r["product"], volume_cl=r["volume_cl"], amount_cents=r["amount_cents"],
        charged_cents=r["charged_cents"], price_milli=r["price_milli"],
        totals_before=_totals(r["totals_before"]), reason=parse_reason(r["reason"]) if r["reason"] else None,
        flags=tuple(json.loads(r["flags"])), recovered=bool(r["recovered"]),
        receipt_started=bool(r["receipt_started"]), receipt_printed=bool(r["receipt_printed"]),
        synced=bool(r["synced"]), created_at=r["created_at"], finished_at=r["finished_at"], seq=r["seq"])


def _totals(raw: str | None) -> dict[int, tuple[int, int]] | None:
    if raw is None:
        return None
    return {int(n): (int(t[0]), int(t[1])) for n, t in json.loads(raw).items()}
