"""Parked sales in the journal (firmware.sale.journal): a sale the registry rejected waits for an operator
and is never resent (issue 10)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_journal import begin, complete

from firmware.sale import journal_schema
from firmware.sale.journal import Journal


def test_parked_sale_is_not_unsynced_and_keeps_its_reason(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    try:
        for sale_id in ("a", "b"):
            begin(j, sale_id)
            complete(j, sale_id)
        assert j.park("a", "conflict") is True
        assert j.park("a", "malformed") is False              # parked once, with its first reason
        assert j.parked_reason("a") == "conflict" and j.parked_reason("b") is None
        assert [r.id for r in j.unsynced()] == ["b"]
        assert [r.id for r in j.parked()] == ["a"]
        assert j.events("a")[-1] == ("completed", {"parked": "conflict"})
        assert not j.get("a").synced
    finally:
        j.close()
    j = Journal(tmp_path / "journal.db")                      # it stays parked across a restart
    try:
        assert [r.id for r in j.unsynced()] == ["b"] and j.parked_reason("a") == "conflict"
    finally:
        j.close()


def test_version_2_journal_gets_the_parked_column(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    begin(j, "old")
    complete(j, "old")
    j.close()
    db = sqlite3.connect(path)                                # as a version 2 journal left it
    db.execute("ALTER TABLE sales DROP COLUMN parked")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    for _ in range(2):                                        # the second opening finds nothing to do
        j = Journal(path)
        try:
            assert [r.id for r in j.unsynced()] == ["old"] and j.parked_reason("old") is None
            assert j._db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.VERSION == 4
        finally:
            j.close()
