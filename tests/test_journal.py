"""firmware.journal: the durable sale journal (SQLite WAL, synchronous=FULL) in a file under tmp_path."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.errors import JournalError
from firmware.journal import OPEN_STATES, STATES, Journal

MASKED = "707700******0019"
TOKEN = "a" * 32


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"     # the parent directory does not exist yet


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    j = Journal(path)
    try:
        yield j
    finally:
        j.close()


def complete(j: Journal, sale_id: str, volume_cl: int = 2000) -> None:
    j.transition(sale_id, "authorizing")
    j.transition(sale_id, "approved", auth_id="auth-" + sale_id, allowed_cl=15000, nozzles=[1, 2])
    j.transition(sale_id, "pump_authorized", totals_before={1: (100, 166)})
    j.transition(sale_id, "completed", nozzle=1, product="diesel", volume_cl=volume_cl, amount_cents=3318,
                 price_milli=1659, finished_at=1_700_000_000.5, flags=["totals_mismatch"], recovered=False)


def test_begin_creates_a_sale(journal: Journal, path: Path) -> None:
    before = time.time()
    journal.begin_sale("s1", 3, MASKED, TOKEN)
    rec = journal.get("s1")
    assert ((rec.id, rec.state, rec.pump, rec.card_masked, rec.card_token)
            == ("s1", "created", 3, MASKED, TOKEN))
    assert rec.auth_id is None and rec.allowed_cl is None and rec.nozzles == () and rec.flags == ()
    assert not rec.recovered and not rec.receipt_printed and not rec.synced
    assert before <= rec.created_at <= time.time()
    assert rec.finished_at is None
    assert path.exists()


def test_transition_sets_fields_with_their_types(journal: Journal) -> None:
    journal.begin_sale("s1", 2, MASKED, TOKEN)
    complete(journal, "s1")
    rec = journal.get("s1")
    assert rec.state == "completed"
    assert rec.auth_id == "auth-s1" and rec.allowed_cl == 15000
    assert rec.nozzles == (1, 2)
    assert (rec.nozzle, rec.product, rec.volume_cl, rec.amount_cents, rec.price_milli) == (
        1, "diesel", 2000, 3318, 1659)
    assert rec.totals_before == {1: (100, 166)}
    assert rec.finished_at == 1_700_000_000.5
    assert rec.flags == ("totals_mismatch",)
    assert rec.recovered is False


def test_events_are_kept_in_order_with_details(journal: Journal) -> None:
    journal.begin_sale("s1", 2, MASKED, TOKEN)
    complete(journal, "s1")
    journal.transition("s1", "completed", reason="secret reason text")
    journal.mark("s1", "receipt_printed")
    events = journal.events("s1")
    assert [s for s, _ in events] == ["created", "authorizing", "approved", "pump_authorized", "completed",
                                      "completed", "completed"]
    assert events[0][1] == {"pump": 2, "kind": "fleet"}
    assert events[2][1] == {"auth_id": "auth-s1", "allowed_cl": 15000, "nozzles": [1, 2]}
    assert events[4][1]["flags"] == ["totals_mismatch"]
    assert events[5][1] == {}                        # the reason text is not copied to the event log
    assert events[6][1] == {"receipt_printed": True}


def test_events_of_sales_do_not_mix(journal: Journal) -> None:
    journal.begin_sale("a", 1, MASKED, TOKEN)
    journal.begin_sale("b", 2, MASKED, TOKEN)
    journal.transition("a", "authorizing")
    journal.transition("b", "failed")
    assert [s for s, _ in journal.events("a")] == ["created", "authorizing"]
    assert [s for s, _ in journal.events("b")] == ["created", "failed"]
    assert journal.events("nope") == []


def test_filters(journal: Journal) -> None:
    journal.begin_sale("created", 1, MASKED, TOKEN)
    for sid in ("approved", "pumping", "declined", "done", "done_empty", "done_printed", "done_synced"):
        journal.begin_sale(sid, 1, MASKED, TOKEN)
        time.sleep(0.002)       # distinct created_at: the filters order by it
    journal.transition("approved", "approved", auth_id="x", allowed_cl=100, nozzles=[1])
    journal.transition("pumping", "pump_authorized", totals_before={1: (0, 0)})
    journal.transition("declined", "declined", reason="wrong_pin")
    complete(journal, "done")
    complete(journal, "done_empty", volume_cl=0)
    complete(journal, "done_printed")
    complete(journal, "done_synced")
    journal.mark("done_printed", "receipt_printed")
    journal.mark("done_synced", "synced")

    assert [r.id for r in journal.open_sales()] == ["approved", "pumping"]
    assert {r.state for r in journal.open_sales()} <= set(OPEN_STATES)
    assert [r.id for r in journal.unprinted()] == ["done", "done_synced"]       # not the 0-litre sale
    assert [r.id for r in journal.unsynced()] == ["done", "done_empty", "done_printed"]
    assert journal.all_sales()[0].id == "created"
    assert len(journal.all_sales()) == 8


def test_mark_sets_flags_and_keeps_state(journal: Journal) -> None:
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    complete(journal, "s1")
    journal.mark("s1", "synced")
    rec = journal.get("s1")
    assert rec.synced and not rec.receipt_printed and rec.state == "completed"
    journal.mark("s1", "receipt_printed")
    rec = journal.get("s1")
    assert rec.synced and rec.receipt_printed and rec.state == "completed"


def test_unknown_state_field_mark_and_sale(journal: Journal) -> None:
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    with pytest.raises(JournalError) as info:
        journal.transition("s1", "refunded")
    assert info.value.context == {"state": "refunded"}
    with pytest.raises(JournalError) as info:
        journal.transition("s1", "approved", pan="7077001000000019", auth_id="x")
    assert info.value.context == {"fields": "pan"}
    with pytest.raises(JournalError) as info:
        journal.mark("s1", "deleted")
    assert info.value.context == {"flag": "deleted"}
    with pytest.raises(JournalError):
        journal.get("nope")
    with pytest.raises(JournalError):
        journal.transition("nope", "approved")
    with pytest.raises(JournalError):
        journal.mark("nope", "synced")
    # failed calls left no trace
    rec = journal.get("s1")
    assert rec.state == "created" and rec.auth_id is None and not rec.synced
    assert [s for s, _ in journal.events("s1")] == ["created"]
    assert journal.events("nope") == []


def test_duplicate_sale_id_is_a_journal_error_and_keeps_the_first(journal: Journal) -> None:
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    with pytest.raises(JournalError):
        journal.begin_sale("s1", 2, MASKED, "b" * 32)
    assert journal.get("s1").pump == 1
    assert len(journal.events("s1")) == 1
    journal.transition("s1", "authorizing")     # the journal is still usable after the rollback
    assert journal.get("s1").state == "authorizing"


def test_every_state_is_accepted_and_recorded(journal: Journal) -> None:
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    for state in STATES:
        journal.transition("s1", state)
        assert journal.get("s1").state == state
    assert [s for s, _ in journal.events("s1")] == ["created", *STATES]


def test_persisted_across_reopen(path: Path) -> None:
    j = Journal(path)
    j.begin_sale("s1", 4, MASKED, TOKEN)
    complete(j, "s1")
    j.mark("s1", "receipt_printed")
    j.begin_sale("s2", 1, MASKED, TOKEN)
    j.transition("s2", "approved", auth_id="a2", allowed_cl=500, nozzles=[3])
    j.put("terminal_config", '{"version": 3}')
    before = j.get("s1")
    j.close()

    j2 = Journal(path)
    try:
        assert j2.get("s1") == before
        assert [r.id for r in j2.open_sales()] == ["s2"]
        assert j2.get("s2").nozzles == (3,)
        assert [r.id for r in j2.unsynced()] == ["s1"]
        assert j2.unprinted() == []
        assert len(j2.events("s1")) == 6
        assert j2.get_value("terminal_config") == '{"version": 3}'
        assert j2.get_value("missing") is None
        j2.put("terminal_config", '{"version": 4}')      # upsert
        assert j2.get_value("terminal_config") == '{"version": 4}'
    finally:
        j2.close()
    # an independent reader sees the committed rows too
    with sqlite3.connect(path) as raw:
        assert (raw.execute("SELECT state, receipt_printed FROM sales WHERE id='s1'").fetchone()
                == ("completed", 1))
    raw.close()


def test_wal_and_synchronous_full(journal: Journal, path: Path) -> None:
    # read the settings of the journal's own connection (synchronous is per connection)
    db = journal._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2       # 2 = FULL
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    assert path.with_name(path.name + "-wal").exists()
    # WAL mode is a property of the file: a fresh connection sees it
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_unopenable_path_is_a_journal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError):
        Journal(blocker / "journal.db")      # parent is a regular file


def test_not_a_database_is_a_journal_error(tmp_path: Path) -> None:
    bad = tmp_path / "journal.db"
    bad.write_bytes(b"this is not an sqlite database file at all, just text" * 20)
    with pytest.raises(JournalError):
        Journal(bad)


def test_concurrent_writes_from_threads_keep_every_event(journal: Journal, path: Path) -> None:
    threads, per_thread = 8, 25
    errors: list[JournalError] = []
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                sid = f"t{n}-{i}"
                journal.begin_sale(sid, n + 1, MASKED, TOKEN)
                journal.transition(sid, "authorizing")
                journal.transition(sid, "approved", auth_id=sid, allowed_cl=i, nozzles=[1])
                journal.get(sid)
        except JournalError as exc:     # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert not errors
    assert len(journal.all_sales()) == threads * per_thread
    assert len(journal.open_sales()) == threads * per_thread
    for n in range(threads):
        for i in range(per_thread):
            assert [s for s, _ in journal.events(f"t{n}-{i}")] == ["created", "authorizing", "approved"]
    journal.close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT COUNT(*) FROM events").fetchone()[0] == threads * per_thread * 3
        seqs = [r[0] for r in raw.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        raw.close()


def test_journal_never_holds_a_full_pan(journal: Journal, path: Path) -> None:
    journal.begin_sale("s1", 1, MASKED, TOKEN)
    complete(journal, "s1")
    journal.close()
    for f in path.parent.iterdir():
        assert b"7077001000000019" not in f.read_bytes()


# The journal of the first release: the sales table without kind, allowed_cents and bank.
_OLD_SCHEMA = """
CREATE TABLE sales (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, pump INTEGER NOT NULL,
    card_masked TEXT NOT NULL, card_token TEXT NOT NULL,
    auth_id TEXT, allowed_cl INTEGER, nozzles TEXT,
    nozzle INTEGER, product TEXT, volume_cl INTEGER, amount_cents INTEGER, price_milli INTEGER,
    totals_before TEXT, reason TEXT, flags TEXT NOT NULL DEFAULT '[]', recovered INTEGER NOT NULL DEFAULT 0,
    receipt_started INTEGER NOT NULL DEFAULT 0, receipt_printed INTEGER NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sale_id TEXT NOT NULL, state TEXT NOT NULL,
    at REAL NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

BANK_SUMMARY = {"aid": "A0000000031010", "label": "VISA DEBIT", "entry_mode": "051", "cvm_results": "420300",
                "tvr": "0000008000", "tsi": "E800", "arc": "00", "response_code": "00", "stan": "000042"}


def _old_journal(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)
    try:
        raw.executescript(_OLD_SCHEMA)
        raw.execute("INSERT INTO sales (id, state, pump, card_masked, card_token, auth_id, allowed_cl, "
                    "nozzles, nozzle, product, volume_cl, amount_cents, price_milli, totals_before, flags, "
                    "receipt_printed, created_at, finished_at) "
                    "VALUES ('old', 'completed', 2, ?, ?, 'auth-old', 15000, '[1]', 1, 'diesel', 2000, 3318, "
                    "1659, '{\"1\": [100, 166]}', '[]', 1, 1700000000.0, 1700000100.0)", (MASKED, TOKEN))
        raw.execute("INSERT INTO events (sale_id, state, at, detail) "
                    "VALUES ('old', 'completed', 1700000100.0, '{}')")
        raw.execute("INSERT INTO kv (key, value) VALUES ('terminal_config', '{\"version\": 2}')")
        raw.commit()
    finally:
        raw.close()


def test_journal_of_the_old_schema_is_upgraded_in_place(path: Path) -> None:
    _old_journal(path)
    j = Journal(path)
    try:
        rec = j.get("old")
        assert (rec.kind, rec.allowed_cents, rec.bank) == ("fleet", None, None)
        assert (rec.state, rec.pump, rec.auth_id, rec.allowed_cl, rec.nozzles) == (
            "completed", 2, "auth-old", 15000, (1,))
        assert (rec.volume_cl, rec.amount_cents, rec.totals_before) == (2000, 3318, {1: (100, 166)})
        assert rec.receipt_printed and not rec.synced
        assert [s for s, _ in j.events("old")] == ["completed"]
        assert j.get_value("terminal_config") == '{"version": 2}'
        # the upgraded file takes bank sales
        j.begin_sale("new", 1, MASKED, TOKEN, kind="bank")
        j.transition("new", "approved", allowed_cents=12000, bank=BANK_SUMMARY)
        assert j.get("new").bank == BANK_SUMMARY
        assert [r.id for r in j.unsynced()] == ["old"]
    finally:
        j.close()
    raw = sqlite3.connect(path)
    try:
        columns = {row[1] for row in raw.execute("PRAGMA table_info(sales)")}
        assert {"kind", "allowed_cents", "bank"} <= columns
    finally:
        raw.close()
    j2 = Journal(path)          # opening an upgraded file again adds nothing twice
    try:
        assert j2.get("old").kind == "fleet" and j2.get("new").kind == "bank"
    finally:
        j2.close()


def test_bank_sale_round_trips_its_summary(journal: Journal, path: Path) -> None:
    journal.begin_sale("b1", 4, "476173******0010", TOKEN, kind="bank")
    rec = journal.get("b1")
    assert (rec.kind, rec.allowed_cents, rec.bank, rec.allowed_cl) == ("bank", None, None, None)
    journal.transition("b1", "authorizing")
    journal.transition("b1", "approved", auth_id="A1B2C3", allowed_cents=12000, bank=BANK_SUMMARY)
    rec = journal.get("b1")
    assert rec.state == "approved" and rec.allowed_cents == 12000
    assert rec.bank == BANK_SUMMARY
    assert rec.bank is not BANK_SUMMARY
    journal.transition("b1", "completed", volume_cl=850, amount_cents=1410, finished_at=1_700_000_000.0)
    rec = journal.get("b1")
    assert rec.bank == BANK_SUMMARY and rec.allowed_cents == 12000      # a later transition keeps them
    journal.close()
    j2 = Journal(path)
    try:
        assert j2.get("b1") == rec
    finally:
        j2.close()


def test_default_kind_is_fleet(journal: Journal) -> None:
    journal.begin_sale("f1", 1, MASKED, TOKEN)
    assert journal.get("f1").kind == "fleet"
    assert journal.events("f1")[0][1] == {"pump": 1, "kind": "fleet"}


def test_unknown_sale_kind_is_refused_and_leaves_no_trace(journal: Journal) -> None:
    with pytest.raises(JournalError) as info:
        journal.begin_sale("c1", 1, MASKED, TOKEN, kind="cash")
    assert info.value.context == {"kind": "cash"}
    with pytest.raises(JournalError):
        journal.get("c1")
    assert journal.events("c1") == []
    assert journal.all_sales() == []


def test_bank_transition_event_holds_the_summary_as_json_text(journal: Journal, path: Path) -> None:
    journal.begin_sale("b1", 2, "476173******0010", TOKEN, kind="bank")
    journal.transition("b1", "approved", allowed_cents=9000, bank=BANK_SUMMARY)
    events = journal.events("b1")
    assert events[0][1] == {"pump": 2, "kind": "bank"}
    state, detail = events[1]
    assert state == "approved"
    assert detail["allowed_cents"] == 9000
    assert isinstance(detail["bank"], str)
    assert json.loads(detail["bank"]) == BANK_SUMMARY
    assert detail["bank"] == json.dumps(BANK_SUMMARY, sort_keys=True)
    raw = sqlite3.connect(path)
    try:
        row = raw.execute("SELECT bank FROM sales WHERE id = 'b1'").fetchone()
    finally:
        raw.close()
    assert json.loads(row[0]) == BANK_SUMMARY
