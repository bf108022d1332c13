"""The journal's tables and the move of an older journal (one kind column, bank summary and fleet
limits in columns of their own) to one row layout for every program. PRAGMA user_version numbers it.

Version 4 numbers the sales the registry is sent (completed ones): seq 1, 2, 3..., so that it can tell a
sale it has not received by a gap (registry.reports). A declined row is never sent, so it gets no number;
a sale sent before the upgrade keeps none either."""

from __future__ import annotations

import sqlite3

__all__ = ["VERSION", "migrate"]

VERSION = 4

_SALES = """
CREATE TABLE sales (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, pump INTEGER NOT NULL, program TEXT NOT NULL,
    card_masked TEXT NOT NULL, card_token TEXT NOT NULL,
    preset_kind TEXT, preset_value INTEGER, nozzles TEXT, reference TEXT,
    data TEXT NOT NULL DEFAULT '{}', adjuncts TEXT NOT NULL DEFAULT '{}',
    nozzle INTEGER, product TEXT, volume_cl INTEGER, amount_cents INTEGER, charged_cents INTEGER,
    price_milli INTEGER, totals_before TEXT, reason TEXT, flags TEXT NOT NULL DEFAULT '[]',
    recovered INTEGER NOT NULL DEFAULT 0, receipt_started INTEGER NOT NULL DEFAULT 0,
    receipt_printed INTEGER NOT NULL DEFAULT 0, synced INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, finished_at REAL, parked TEXT, seq INTEGER
)"""

_OTHERS = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sale_id TEXT NOT NULL, state TEXT NOT NULL,
    at REAL NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ix_sales_seq ON sales (seq);
"""

# version 4: completed rows not yet sent are numbered in the order they were made (rowid breaks a tie);
# one the registry acknowledged already (synced) keeps no number, since the registry's gap report counts
# from 1; an open one gets its number when it completes
_NUMBER = """
UPDATE sales SET seq = (SELECT n FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, rowid) AS n
                                       FROM sales WHERE state = 'completed' AND synced = 0) AS ordered
                        WHERE ordered.id = sales.id)
WHERE state = 'completed' AND synced = 0
"""

# version 1 rows: a bank sale's preset is its amount, a fleet sale's its volume; a fleet sale settles
# against the registry's authorization (data.registry_auth, as firmware.programs.fleet grants it)
_FROM_V1 = """
INSERT INTO sales (id, state, pump, program, card_masked, card_token, preset_kind, preset_value, nozzles,
    reference, data, nozzle, product, volume_cl, amount_cents, charged_cents, price_milli, totals_before,
    reason, flags, recovered, receipt_started, receipt_printed, synced, created_at, finished_at)
SELECT id, state, pump, kind, card_masked, card_token,
    CASE WHEN allowed_cents IS NOT NULL THEN 'amount' WHEN allowed_cl IS NOT NULL THEN 'volume' END,
    COALESCE(allowed_cents, allowed_cl), nozzles, auth_id,
    CASE WHEN kind = 'bank' THEN COALESCE(bank, '{}')
         WHEN auth_id IS NOT NULL THEN json_object('registry_auth', auth_id) ELSE '{}' END,
    nozzle, product,
    volume_cl, amount_cents, amount_cents, price_milli, totals_before, reason, flags, recovered,
    receipt_started, receipt_printed, synced, created_at, finished_at
FROM sales_v1
"""


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or bring an older journal up to VERSION in one transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == VERSION:
        return
    have = {row[1] for row in db.execute("PRAGMA table_info(sales)")}
    db.execute("BEGIN IMMEDIATE")
    try:
        if not have:
            db.execute(_SALES)
        elif "program" not in have:
            for name, decl in (("kind", "TEXT NOT NULL DEFAULT 'fleet'"), ("allowed_cents", "INTEGER"),
                               ("bank", "TEXT")):
                if name not in have:     # the first release had none of these
                    db.execute(f"ALTER TABLE sales ADD COLUMN {name} {decl}")
            db.execute("ALTER TABLE sales RENAME TO sales_v1")
            db.execute(_SALES)
            db.execute(_FROM_V1)
            db.execute("DROP TABLE sales_v1")
        if "parked" not in {row[1] for row in db.execute("PRAGMA table_info(sales)")}:
            db.execute("ALTER TABLE sales ADD COLUMN parked TEXT")     # version 3: the registry's rejection
        if "seq" not in {row[1] for row in db.execute("PRAGMA table_info(sales)")}:
            db.execute("ALTER TABLE sales ADD COLUMN seq INTEGER")     # version 4: the sale's number
        if db.execute("SELECT 1 FROM sales WHERE seq IS NOT NULL LIMIT 1").fetchone() is None:
            db.execute(_NUMBER)
        for statement in _OTHERS.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except sqlite3.Error:
        db.execute("ROLLBACK")
        raise
