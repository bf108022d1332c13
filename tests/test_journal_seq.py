"""The journal numbers the sales it sends the registry (seq 1, 2, 3... per terminal, given when a sale
completes), the SALE message carries the number and the registry stores it: a gap in what the registry holds
is a sale not yet received (registry.reports). A declined row is never sent, so it takes no number."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import messages as m
from contracts.errors import MessageError
from firmware.hostlink import sale_payload
from firmware.sale import journal_schema
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState as S
from tests.test_registry_service import Env, sqlite_env

MASKED = "707700******0019"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def _begin(j: Journal, sale_id: str) -> None:
    j.begin_sale(sale_id, 1, MASKED, "a" * 32, program="fleet")


def _complete(j: Journal, sale_id: str) -> None:
    """approved, then completed with nothing dispensed (the pump never taken)"""
    j.transition(sale_id, S.AUTHORIZING)
    j.transition(sale_id, S.APPROVED)
    j.transition(sale_id, S.COMPLETED, volume_cl=0, amount_cents=0)


def test_a_sale_gets_the_next_number_when_it_completes_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    try:
        for name in ("a", "declined", "b", "open"):
            _begin(j, name)
        assert {r.seq for r in j.all_sales()} == {None}       # none completed yet
        _complete(j, "b")
        j.transition("declined", S.DECLINED)                  # never sent: no number
        _complete(j, "a")
        assert {r.id: r.seq for r in j.all_sales()} == {"a": 2, "declined": None, "b": 1, "open": None}
        j.flag("b", "attendant_check")                        # a move to the same state keeps it
        j.mark("b", "synced")
        j.park("a", "malformed")
        assert (j.get("b").seq, j.get("a").seq) == (1, 2)
    finally:
        j.close()
    j = Journal(path)                                         # a restart goes on from the last
    try:
        _complete(j, "open")
        assert j.get("open").seq == 3
    finally:
        j.close()


def test_sales_completed_on_many_threads_get_distinct_numbers_without_a_hole(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")

    def sell(k: int) -> None:
        for n in range(20):
            _begin(j, f"t{k}-{n}")
            _complete(j, f"t{k}-{n}")

    try:
        threads = [threading.Thread(target=sell, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.seq or 0 for r in j.all_sales()) == list(range(1, 81))
    finally:
        j.close()


def _v3_journal(path: Path, rows: list[tuple[str, str, float]]) -> None:
    """A journal as a version-3 terminal left it (no seq), written with sqlite3 alone: (id, state,
    created_at) in order of insertion."""
    raw = sqlite3.connect(path)
    try:
        raw.execute(journal_schema._SALES.replace(", seq INTEGER", ""))
        raw.executescript(journal_schema._OTHERS.split("CREATE UNIQUE INDEX")[0])
        for sale_id, state, at in rows:
            raw.execute("INSERT INTO sales (id, state, pump, program, card_masked, card_token, created_at) "
                        "VALUES (?, ?, 1, 'fleet', ?, ?, ?)", (sale_id, state, MASKED, "a" * 32, at))
        raw.execute("INSERT INTO kv (key, value) VALUES ('terminal_config', '{}')")
        raw.execute("PRAGMA user_version = 3")
        raw.commit()
        assert "seq" not in {row[1] for row in raw.execute("PRAGMA table_info(sales)")}
    finally:
        raw.close()


def test_a_version_3_journal_keeps_every_row_its_completed_ones_numbered_in_creation_order(
        tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    # inserted out of time order, two made in the same instant (the older row first), one declined, one open
    _v3_journal(path, [("late", "completed", 300.0), ("early", "completed", 100.0),
                       ("tie-a", "completed", 200.0), ("tie-b", "completed", 200.0),
                       ("declined", "declined", 150.0), ("open", "approved", 250.0)])
    want = {"early": 1, "tie-a": 2, "tie-b": 3, "late": 4, "declined": None, "open": None}
    j = Journal(path)
    try:
        assert {r.id: r.seq for r in j.all_sales()} == want
        assert [r.state for r in j.all_sales()].count(S.COMPLETED) == 4
        assert j.get_value("terminal_config") == "{}"
        assert j._db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.VERSION == 4
        j.transition("open", S.COMPLETED, volume_cl=0, amount_cents=0)
        assert j.get("open").seq == 5
    finally:
        j.close()
    j = Journal(path)                      # opened again: nothing renumbered
    try:
        assert {r.id: r.seq for r in j.all_sales()} == want | {"open": 5}
    finally:
        j.close()


def test_a_version_3_journal_numbers_only_the_sales_the_registry_has_not_acknowledged(
        tmp_path: Path) -> None:
    # the registry's gap report counts from 1: a synced sale it holds without a number must stay
    # unnumbered, the first unsent one is 1 and a sale completed after the upgrade goes on from there
    path = tmp_path / "journal.db"
    _v3_journal(path, [("sent-1", "completed", 100.0), ("sent-2", "completed", 200.0),
                       ("unsent-b", "completed", 400.0), ("unsent-a", "completed", 300.0),
                       ("open", "approved", 500.0)])
    raw = sqlite3.connect(path)
    raw.execute("UPDATE sales SET synced = 1 WHERE id LIKE 'sent-%'")
    raw.commit()
    raw.close()
    j = Journal(path)
    try:
        assert {r.id: r.seq for r in j.all_sales()} == {
            "sent-1": None, "sent-2": None, "unsent-a": 1, "unsent-b": 2, "open": None}
        j.transition("open", S.COMPLETED, volume_cl=0, amount_cents=0)
        assert j.get("open").seq == 3
    finally:
        j.close()


def test_a_version_3_journal_with_every_sale_sent_numbers_the_next_sale_1(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _v3_journal(path, [("sent", "completed", 100.0), ("open", "approved", 200.0)])
    raw = sqlite3.connect(path)
    raw.execute("UPDATE sales SET synced = 1 WHERE id = 'sent'")
    raw.commit()
    raw.close()
    j = Journal(path)
    try:
        assert j.get("sent").seq is None
        j.transition("open", S.COMPLETED, volume_cl=0, amount_cents=0)
        assert j.get("open").seq == 1
    finally:
        j.close()


def test_two_rows_cannot_share_a_number(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    try:
        for name in ("a", "b"):
            _begin(j, name)
            _complete(j, name)
        with pytest.raises(sqlite3.IntegrityError):
            j._db.execute("UPDATE sales SET seq = 1 WHERE id = 'b'")
    finally:
        j.close()


def test_the_sale_message_carries_the_number(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    try:
        first, sale_id = str(uuid.uuid4()), str(uuid.uuid4())
        for each in (first, sale_id):
            _begin(j, each)
            _complete(j, each)
        doc = sale_payload(j.get(sale_id), "T-0001", "ST-001")
    finally:
        j.close()
    assert m.decode(m.encode(doc, m.SALE), m.SALE)["seq"] == 2


def test_a_sale_without_a_number_still_decodes_and_a_bad_number_is_refused() -> None:
    doc = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": None, "terminal": "T-0001",
           "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 100,
           "amount_cents": 166, "price_milli": 1659, "card_masked": MASKED,
           "finished_at": "2025-03-15T11:59:00Z", "recovered": False, "flags": []}
    assert "seq" not in m.decode(m.encode(doc, m.SALE), m.SALE)      # an older terminal, or a release
    for bad in (0, -1, True, "3", None, 2**63):
        with pytest.raises(MessageError, match="field=seq"):
            m.encode(doc | {"seq": bad}, m.SALE)


def test_the_registry_stores_the_number(env: Env) -> None:
    doc, ack = env.sale(None, 0, kind="bank", seq=7)
    assert ack["status"] == "stored"
    assert env.transaction(doc["sale_id"]).seq == 7
    old, _ = env.sale(None, 0, kind="bank")
    assert env.transaction(old["sale_id"]).seq is None
