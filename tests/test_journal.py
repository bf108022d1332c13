"""firmware.sale.journal: the durable sale journal (SQLite WAL, synchronous=FULL) in a file under tmp_path,
one for every card program; its moves checked against firmware.sale.machine; a version-1 journal migrated
on open (firmware.sale.journal_schema)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import JournalError
from contracts.reasons import DeclineReason
from firmware.hostlink import sale_payload
from firmware.programs.bank.summary import BankSummary
from firmware.sale import journal_schema
from firmware.sale.journal import Journal
from firmware.sale.machine import OPEN_STATES, TRANSITIONS, SaleState
from firmware.sale.record import Preset, SaleRecord

S = SaleState
MASKED = "707700******0019"
TOKEN = "a" * 32
BANK_MASKED = "476173******0010"
BANK_SUMMARY = BankSummary(entry_mode="051", preauth_cents=12000, cvm_results="420300", aid="A0000000031010",
                           app_label="VISA DEBIT", tvr="0000008000", tsi="E800", arc="00", response_code="00",
                           auth_code="A1B2C3", approved_cents=12000).to_doc()

# a path from created to each state, along the machine's moves
PATH: dict[SaleState, tuple[SaleState, ...]] = {
    S.CREATED: (),
    S.AUTHORIZING: (S.AUTHORIZING,),
    S.DECLINED: (S.DECLINED,),
    S.APPROVED: (S.AUTHORIZING, S.APPROVED),
    S.PUMP_AUTHORIZED: (S.AUTHORIZING, S.APPROVED, S.PUMP_AUTHORIZED),
    S.COMPLETED: (S.AUTHORIZING, S.APPROVED, S.PUMP_AUTHORIZED, S.COMPLETED),
}


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


def begin(j: Journal, sale_id: str, pump: int = 1, program: str = "fleet") -> None:
    j.begin_sale(sale_id, pump, MASKED, TOKEN, program=program)


def approve(j: Journal, sale_id: str, cl: int = 15000, nozzles: tuple[int, ...] = (1, 2)) -> None:
    j.transition(sale_id, S.AUTHORIZING)
    j.transition(sale_id, S.APPROVED, preset=Preset.volume(cl), nozzles=list(nozzles),
                 reference="auth-" + sale_id, data={"registry_auth": "auth-" + sale_id})


def complete(j: Journal, sale_id: str, volume_cl: int = 2000) -> None:
    approve(j, sale_id)
    j.transition(sale_id, S.PUMP_AUTHORIZED, totals_before={1: (100, 166)})
    j.transition(sale_id, S.COMPLETED, nozzle=1, product="diesel", volume_cl=volume_cl, amount_cents=3318,
                 charged_cents=3218, price_milli=1659, finished_at=1_700_000_000.5, flags=["totals_mismatch"],
                 recovered=False)


def walk(j: Journal, sale_id: str, state: SaleState) -> None:
    for step in PATH[state]:
        j.transition(sale_id, step)


def test_begin_creates_a_sale(journal: Journal, path: Path) -> None:
    before = time.time()
    journal.begin_sale("s1", 3, MASKED, TOKEN, program="fleet", adjuncts={"loyalty": {"member": "M-1"}})
    rec = journal.get("s1")
    assert ((rec.id, rec.state, rec.pump, rec.program, rec.card_masked, rec.card_token)
            == ("s1", S.CREATED, 3, "fleet", MASKED, TOKEN))
    assert isinstance(rec.state, SaleState)
    assert rec.adjuncts == {"loyalty": {"member": "M-1"}}
    assert rec.preset is None and rec.reference is None and rec.data == {} and rec.nozzles == ()
    assert rec.charged_cents is None and rec.reason is None and rec.flags == ()
    assert not rec.recovered and not rec.receipt_started and not rec.receipt_printed and not rec.synced
    assert before <= rec.created_at <= time.time()
    assert rec.finished_at is None
    assert path.exists()


def test_transition_sets_fields_with_their_types(journal: Journal) -> None:
    begin(journal, "s1", pump=2)
    complete(journal, "s1")
    rec = journal.get("s1")
    assert rec.state is S.COMPLETED
    assert rec.preset == Preset("volume", 15000) and rec.preset == Preset.volume(15000)
    assert rec.reference == "auth-s1" and rec.data == {"registry_auth": "auth-s1"}
    assert rec.nozzles == (1, 2)
    assert (rec.nozzle, rec.product, rec.volume_cl, rec.amount_cents, rec.charged_cents, rec.price_milli) == (
        1, "diesel", 2000, 3318, 3218, 1659)
    assert rec.totals_before == {1: (100, 166)}
    assert rec.finished_at == 1_700_000_000.5
    assert rec.flags == ("totals_mismatch",)
    assert rec.recovered is False
    assert rec.adjuncts == {}


def test_reason_is_kept_as_a_decline_reason(journal: Journal) -> None:
    begin(journal, "s1")
    journal.transition("s1", S.AUTHORIZING)
    journal.transition("s1", S.DECLINED, reason=DeclineReason.WRONG_PIN)
    rec = journal.get("s1")
    assert rec.reason is DeclineReason.WRONG_PIN and rec.state is S.DECLINED


def test_events_are_kept_in_order_with_details(journal: Journal) -> None:
    begin(journal, "s1", pump=2)
    complete(journal, "s1")
    journal.flag("s1", "attendant_check")
    journal.mark("s1", "receipt_printed")
    events = journal.events("s1")
    assert [s for s, _ in events] == ["created", "authorizing", "approved", "pump_authorized", "completed",
                                      "completed", "completed"]
    assert events[0][1] == {"pump": 2, "program": "fleet"}
    approved = events[2][1]
    assert (approved["preset_kind"], approved["preset_value"], approved["reference"]) == ("volume", 15000,
                                                                                         "auth-s1")
    assert json.loads(approved["nozzles"]) == [1, 2]
    assert json.loads(approved["data"]) == {"registry_auth": "auth-s1"}
    assert json.loads(events[3][1]["totals_before"]) == {"1": [100, 166]}
    assert json.loads(events[4][1]["flags"]) == ["totals_mismatch"]
    assert events[4][1]["charged_cents"] == 3218
    assert json.loads(events[5][1]["flags"]) == ["totals_mismatch", "attendant_check"]
    assert events[6][1] == {"receipt_printed": True}


def test_the_event_of_a_decline_holds_its_reason_code(journal: Journal) -> None:
    begin(journal, "s1")
    journal.transition("s1", S.DECLINED, reason=DeclineReason.CARD_EXPIRED)
    assert journal.events("s1")[-1] == ("declined", {"reason": "card_expired"})


def test_events_of_sales_do_not_mix(journal: Journal) -> None:
    begin(journal, "a", 1)
    begin(journal, "b", 2)
    journal.transition("a", S.AUTHORIZING)
    journal.transition("b", S.DECLINED, reason=DeclineReason.CANCELLED)
    assert [s for s, _ in journal.events("a")] == ["created", "authorizing"]
    assert [s for s, _ in journal.events("b")] == ["created", "declined"]
    assert journal.events("nope") == []


def test_filters(journal: Journal) -> None:
    begin(journal, "created")
    for sid in ("approved", "pumping", "declined", "done", "done_empty", "done_printed", "done_synced"):
        begin(journal, sid)
        time.sleep(0.002)       # distinct created_at: the filters order by it
    approve(journal, "approved", cl=100, nozzles=(1,))
    approve(journal, "pumping")
    journal.transition("pumping", S.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
    journal.transition("declined", S.DECLINED, reason=DeclineReason.WRONG_PIN)
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
    assert [r.id for r in journal.sales_in(S.CREATED, S.DECLINED)] == ["created", "declined"]
    assert journal.sales_in(S.AUTHORIZING) == []
    assert journal.all_sales()[0].id == "created"
    assert len(journal.all_sales()) == 8


def test_mark_sets_flags_and_keeps_state(journal: Journal) -> None:
    begin(journal, "s1")
    complete(journal, "s1")
    journal.mark("s1", "synced")
    rec = journal.get("s1")
    assert rec.synced and not rec.receipt_printed and rec.state is S.COMPLETED
    journal.mark("s1", "receipt_started")
    journal.mark("s1", "receipt_printed")
    rec = journal.get("s1")
    assert rec.synced and rec.receipt_started and rec.receipt_printed and rec.state is S.COMPLETED


def test_flag_adds_a_flag_once_and_keeps_state(journal: Journal) -> None:
    begin(journal, "s1")
    approve(journal, "s1")
    journal.transition("s1", S.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
    journal.flag("s1", "attendant_check")
    journal.flag("s1", "attendant_check")               # a second time adds nothing
    rec = journal.get("s1")
    assert rec.flags == ("attendant_check",) and rec.state is S.PUMP_AUTHORIZED
    assert [s for s, _ in journal.events("s1")][-2:] == ["pump_authorized", "pump_authorized"]
    journal.transition("s1", S.COMPLETED, volume_cl=0, amount_cents=0, flags=[*rec.flags, "over_authorized"])
    journal.flag("s1", "settled_from_totals")            # a closed sale takes a flag too
    rec = journal.get("s1")
    assert rec.flags == ("attendant_check", "over_authorized", "settled_from_totals")
    assert rec.state is S.COMPLETED
    with pytest.raises(JournalError):
        journal.flag("nope", "attendant_check")


def test_unknown_field_mark_and_sale(journal: Journal) -> None:
    begin(journal, "s1")
    journal.transition("s1", S.AUTHORIZING)
    with pytest.raises(JournalError) as info:
        journal.transition("s1", S.APPROVED, pan="7077001000000019", reference="x")
    assert info.value.context == {"fields": "pan"}
    with pytest.raises(JournalError) as info:
        journal.transition("s1", S.APPROVED, kind="fleet", allowed_cl=100)    # version-1 fields
    assert info.value.context == {"fields": "allowed_cl,kind"}
    with pytest.raises(JournalError) as info:
        journal.mark("s1", "deleted")
    assert info.value.context == {"flag": "deleted"}
    with pytest.raises(JournalError):
        journal.get("nope")
    with pytest.raises(JournalError) as info:
        journal.transition("nope", S.AUTHORIZING)
    assert info.value.context == {"sale_id": "nope"}
    with pytest.raises(JournalError):
        journal.mark("nope", "synced")
    # failed calls left no trace
    rec = journal.get("s1")
    assert rec.state is S.AUTHORIZING and rec.reference is None and not rec.synced
    assert [s for s, _ in journal.events("s1")] == ["created", "authorizing"]
    assert journal.events("nope") == []


def test_every_move_of_the_machine_is_accepted_and_recorded(journal: Journal) -> None:
    moves = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
    assert moves, "the machine has moves"
    for n, (start, end) in enumerate(moves):
        sid = f"m{n}"
        begin(journal, sid)
        walk(journal, sid, start)
        journal.transition(sid, end)
        assert journal.get(sid).state is end
        assert [s for s, _ in journal.events(sid)] == ["created", *PATH[start], end]
    # every state of the machine is reached from created
    assert set(PATH) == set(SaleState)
    for state, steps in PATH.items():
        for a, b in zip((S.CREATED, *steps), steps):
            assert b in TRANSITIONS[a], (a, b)
        assert (steps[-1] if steps else S.CREATED) is state


def test_a_move_to_the_same_state_only_sets_fields(journal: Journal) -> None:
    for state in SaleState:
        sid = f"same-{state.value}"
        begin(journal, sid)
        walk(journal, sid, state)
        journal.transition(sid, state, flags=["attendant_check"])
        rec = journal.get(sid)
        assert rec.state is state and rec.flags == ("attendant_check",)


def test_an_illegal_move_raises_and_leaves_no_trace(journal: Journal) -> None:
    tried = 0
    for start in SaleState:
        for end in SaleState:
            if end is start or end in TRANSITIONS[start]:
                continue
            sid = f"{start.value}-{end.value}"
            begin(journal, sid)
            walk(journal, sid, start)
            before, events = journal.get(sid), journal.events(sid)
            with pytest.raises(JournalError) as info:
                journal.transition(sid, end, flags=["x"], volume_cl=1)
            assert info.value.context == {"from": start.value, "to": end.value}
            assert journal.get(sid) == before               # no field set either
            assert journal.events(sid) == events
            tried += 1
    assert tried == len(SaleState) ** 2 - len(SaleState) - sum(len(t) for t in TRANSITIONS.values())
    # the journal is usable after each rollback
    begin(journal, "after")
    journal.transition("after", S.AUTHORIZING)


def test_closed_sales_do_not_reopen(journal: Journal) -> None:
    begin(journal, "done")
    complete(journal, "done")
    begin(journal, "no")
    journal.transition("no", S.DECLINED, reason=DeclineReason.WRONG_PIN)
    for sid in ("done", "no"):
        for state in (S.CREATED, S.AUTHORIZING, S.APPROVED, S.PUMP_AUTHORIZED):
            with pytest.raises(JournalError, match="no such move"):
                journal.transition(sid, state)
    with pytest.raises(JournalError):
        journal.transition("done", S.DECLINED, reason=DeclineReason.INTERRUPTED)
    with pytest.raises(JournalError):
        journal.transition("no", S.COMPLETED)


def test_duplicate_sale_id_is_a_journal_error_and_keeps_the_first(journal: Journal) -> None:
    begin(journal, "s1", 1)
    with pytest.raises(JournalError):
        journal.begin_sale("s1", 2, MASKED, "b" * 32, program="bank")
    rec = journal.get("s1")
    assert (rec.pump, rec.program) == (1, "fleet")
    assert len(journal.events("s1")) == 1
    journal.transition("s1", S.AUTHORIZING)     # the journal is still usable after the rollback
    assert journal.get("s1").state is S.AUTHORIZING


def test_persisted_across_reopen(path: Path) -> None:
    j = Journal(path)
    begin(j, "s1", 4)
    complete(j, "s1")
    j.mark("s1", "receipt_printed")
    begin(j, "s2", 1)
    approve(j, "s2", cl=500, nozzles=(3,))
    j.put("terminal_config", '{"version": 3}')
    before = j.get("s1")
    j.close()

    j2 = Journal(path)
    try:
        assert j2.get("s1") == before
        assert [r.id for r in j2.open_sales()] == ["s2"]
        assert j2.get("s2").nozzles == (3,) and j2.get("s2").preset == Preset.volume(500)
        assert [r.id for r in j2.unsynced()] == ["s1"]
        assert j2.unprinted() == []
        assert len(j2.events("s1")) == 6
        assert j2.get_value("terminal_config") == '{"version": 3}'
        assert j2.get_value("missing") is None
        j2.put("terminal_config", '{"version": 4}')      # upsert
        assert j2.get_value("terminal_config") == '{"version": 4}'
        assert j2._db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.VERSION == 4
    finally:
        j2.close()
    # an independent reader sees the committed rows too
    raw = sqlite3.connect(path)
    try:
        assert (raw.execute("SELECT state, receipt_printed FROM sales WHERE id='s1'").fetchone()
                == ("completed", 1))
    finally:
        raw.close()


def test_wal_and_synchronous_full(journal: Journal, path: Path) -> None:
    # read the settings of the journal's own connection (synchronous is per connection)
    db = journal._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2       # 2 = FULL
    begin(journal, "s1")
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
                begin(journal, sid, n + 1)
                journal.transition(sid, S.AUTHORIZING)
                journal.transition(sid, S.APPROVED, preset=Preset.volume(i + 1), nozzles=[1], reference=sid)
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
    begin(journal, "s1")
    complete(journal, "s1")
    journal.begin_sale("b1", 2, BANK_MASKED, TOKEN, program="bank")
    journal.transition("b1", S.AUTHORIZING, data=BANK_SUMMARY)
    journal.close()
    for f in path.parent.iterdir():
        data = f.read_bytes()
        assert b"7077001000000019" not in data and b"4761739001010010" not in data


# -- one journal for every program -----------------------------------------------------------------------


def test_bank_sale_round_trips_its_summary(journal: Journal, path: Path) -> None:
    journal.begin_sale("b1", 4, BANK_MASKED, TOKEN, program="bank")
    rec = journal.get("b1")
    assert (rec.program, rec.preset, rec.data, rec.reference) == ("bank", None, {}, None)
    journal.transition("b1", S.AUTHORIZING, data={"entry_mode": "051", "preauth_cents": 12000})
    assert journal.get("b1").data == {"entry_mode": "051", "preauth_cents": 12000}
    journal.transition("b1", S.APPROVED, preset=Preset.amount(12000), nozzles=[1], reference="A1B2C3",
                       data=BANK_SUMMARY)
    rec = journal.get("b1")
    assert rec.state is S.APPROVED and rec.preset == Preset("amount", 12000)
    assert rec.data == BANK_SUMMARY and rec.data is not BANK_SUMMARY
    assert BankSummary.from_doc(rec.data) == BankSummary.from_doc(BANK_SUMMARY)
    journal.transition("b1", S.COMPLETED, volume_cl=850, amount_cents=1410, charged_cents=1410,
                       finished_at=1_700_000_000.0)
    rec = journal.get("b1")
    # a later transition keeps them
    assert rec.data == BANK_SUMMARY and rec.preset == Preset.amount(12000) and rec.reference == "A1B2C3"
    journal.close()
    j2 = Journal(path)
    try:
        assert j2.get("b1") == rec
    finally:
        j2.close()


def test_program_name_is_kept_as_given(journal: Journal) -> None:
    """The journal knows no program by name: any program's sales share the one row layout."""
    for program in ("fleet", "bank", "voucher"):
        begin(journal, program, program=program)
        assert journal.get(program).program == program
        assert journal.events(program)[0][1] == {"pump": 1, "program": program}


def test_program_is_required(journal: Journal) -> None:
    with pytest.raises(TypeError):
        journal.begin_sale("c1", 1, MASKED, TOKEN)  # type: ignore[call-arg]
    with pytest.raises(JournalError):
        journal.get("c1")
    assert journal.all_sales() == []


def test_bank_transition_event_holds_the_data_as_json_text(journal: Journal, path: Path) -> None:
    journal.begin_sale("b1", 2, BANK_MASKED, TOKEN, program="bank")
    journal.transition("b1", S.AUTHORIZING)
    journal.transition("b1", S.APPROVED, preset=Preset.amount(9000), data=BANK_SUMMARY)
    events = journal.events("b1")
    assert events[0][1] == {"pump": 2, "program": "bank"}
    state, detail = events[2]
    assert state == "approved"
    assert (detail["preset_kind"], detail["preset_value"]) == ("amount", 9000)
    assert isinstance(detail["data"], str)
    assert json.loads(detail["data"]) == BANK_SUMMARY
    assert detail["data"] == json.dumps(BANK_SUMMARY, sort_keys=True)
    raw = sqlite3.connect(path)
    try:
        row = raw.execute("SELECT data FROM sales WHERE id = 'b1'").fetchone()
    finally:
        raw.close()
    assert json.loads(row[0]) == BANK_SUMMARY


# -- version 1 -> version 2 ------------------------------------------------------------------------------

# The version-1 journal (git show 60eaa63:firmware/journal.py, _SCHEMA): one kind column, a fleet sale's
# litres and a bank sale's amount and summary in columns of their own. user_version was never set (0).
_V1_SCHEMA = """
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

# The journal of the first release: the sales table without kind, allowed_cents and bank (which version 1
# added with ALTER TABLE, _ADDED).
_ADDED_LINE = "    kind TEXT NOT NULL DEFAULT 'fleet', allowed_cents INTEGER, bank TEXT,\n"
_FIRST_SCHEMA = _V1_SCHEMA.replace(_ADDED_LINE, "")

OLD_BANK = {"aid": "A0000000031010", "app_label": "VISA DEBIT", "entry_mode": "051", "preauth_cents": 12000,
            "cvm_results": "420300", "tvr": "0000008000", "tsi": "E800", "arc": "00", "response_code": "00",
            "auth_code": "A1B2C3", "rrn": "000000000777", "approved_cents": 12000, "partial": False,
            "cryptogram": "ARQC", "issuer_authenticated": True}
OLD_BANK_EARLY = {"entry_mode": "901", "preauth_cents": 12000, "cvm_results": "online_pin"}

_FLEET: dict[str, Any] = {"pump": 1, "card_masked": MASKED, "card_token": TOKEN, "kind": "fleet"}
_BANK: dict[str, Any] = {"pump": 2, "card_masked": BANK_MASKED, "card_token": "b" * 32, "kind": "bank"}

# fleet and bank sales in every state a version-1 terminal left them in
V1_ROWS: list[dict[str, Any]] = [
    {**_FLEET, "id": "f-created", "state": "created"},
    {**_FLEET, "id": "f-authorizing", "state": "authorizing"},
    {**_FLEET, "id": "f-declined", "state": "declined", "reason": "expired_card"},
    {**_FLEET, "id": "f-approved", "state": "approved", "auth_id": "auth-f1", "allowed_cl": 15000,
     "nozzles": "[1, 2]"},
    {**_FLEET, "id": "f-pumping", "state": "pump_authorized", "auth_id": "auth-f2", "allowed_cl": 4000,
     "nozzles": "[2]", "totals_before": '{"2": [500, 830]}', "flags": '["attendant_check"]'},
    {**_FLEET, "id": "f-done", "state": "completed", "auth_id": "auth-f3", "allowed_cl": 15000,
     "nozzles": "[1]", "totals_before": '{"1": [100, 166]}', "nozzle": 1, "product": "diesel",
     "volume_cl": 2000, "amount_cents": 3318, "price_milli": 1659, "flags": '["totals_mismatch"]',
     "receipt_started": 1, "receipt_printed": 1, "synced": 1, "finished_at": 1_700_000_100.0},
    {**_FLEET, "id": "f-unsynced", "state": "completed", "auth_id": "auth-f4", "allowed_cl": 15000,
     "nozzles": "[1]", "totals_before": '{"1": [2100, 3484]}', "nozzle": 1, "product": "diesel",
     "volume_cl": 1000, "amount_cents": 1659, "price_milli": 1659, "recovered": 1, "receipt_started": 1,
     "finished_at": 1_700_000_200.0},
    {**_BANK, "id": "b-authorizing", "state": "authorizing", "bank": json.dumps(OLD_BANK_EARLY)},
    {**_BANK, "id": "b-declined", "state": "declined", "reason": "incorrect_pin",
     "bank": json.dumps(OLD_BANK_EARLY)},
    {**_BANK, "id": "b-approved", "state": "approved", "auth_id": "A1B2C3", "allowed_cents": 12000,
     "nozzles": "[1, 2]", "bank": json.dumps(OLD_BANK, sort_keys=True)},
    {**_BANK, "id": "b-done", "state": "completed", "auth_id": "A1B2C3", "allowed_cents": 12000,
     "nozzles": "[1]", "bank": json.dumps(OLD_BANK, sort_keys=True), "totals_before": '{"1": [0, 0]}',
     "nozzle": 1, "product": "diesel", "volume_cl": 850, "amount_cents": 1410, "price_milli": 1659,
     "flags": '["over_authorized"]', "receipt_started": 1, "synced": 0, "finished_at": 1_700_000_300.0},
]


def _v1_journal(path: Path, schema: str, rows: list[dict[str, Any]]) -> None:
    """A journal as a version-1 (or first-release) terminal left it, written with sqlite3 alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)
    try:
        raw.executescript(schema)
        for n, row in enumerate(rows):
            row = {"created_at": 1_700_000_000.0 + n, **row}
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            raw.execute(f"INSERT INTO sales ({names}) VALUES ({marks})", tuple(row.values()))
            raw.execute("INSERT INTO events (sale_id, state, at, detail) VALUES (?, 'created', ?, ?)",
                        (row["id"], row["created_at"], json.dumps({"pump": row["pump"],
                                                                  "kind": row.get("kind", "fleet")})))
            if row["state"] != "created":
                raw.execute("INSERT INTO events (sale_id, state, at, detail) VALUES (?, ?, ?, '{}')",
                            (row["id"], row["state"], row["created_at"] + 0.5))
        raw.execute("INSERT INTO kv (key, value) VALUES ('terminal_config', '{\"version\": 2}')")
        raw.execute("INSERT INTO kv (key, value) VALUES ('acquirer_stan', '000042')")
        raw.commit()
    finally:
        raw.close()


def _dump(path: Path) -> dict[str, Any]:
    """Everything in a journal file, read with sqlite3 alone: schema, user_version and every row."""
    raw = sqlite3.connect(path)
    try:
        tables = dict(raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"))
        out: dict[str, Any] = {"schema": tables, "version": raw.execute("PRAGMA user_version").fetchone()[0]}
        for name in tables:
            if name != "sqlite_sequence":
                out[name] = raw.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
        return out
    finally:
        raw.close()


def _v2_data(row: dict[str, Any]) -> dict[str, Any]:
    """A bank sale keeps its summary; a fleet sale settles against the registry's authorization."""
    if row.get("kind", "fleet") == "bank":
        return dict(json.loads(row["bank"])) if row.get("bank") else {}
    return {"registry_auth": row["auth_id"]} if row.get("auth_id") else {}


def _expected(row: dict[str, Any], created_at: float) -> dict[str, Any]:
    """What the version-2 SaleRecord of a version-1 row holds."""
    preset = (Preset.amount(row["allowed_cents"]) if row.get("allowed_cents") is not None
              else Preset.volume(row["allowed_cl"]) if row.get("allowed_cl") is not None else None)
    totals = row.get("totals_before")
    return {
        "id": row["id"], "state": SaleState(row["state"]), "pump": row["pump"],
        "program": row.get("kind", "fleet"), "card_masked": row["card_masked"],
        "card_token": row["card_token"],
        "preset": preset, "nozzles": tuple(json.loads(row.get("nozzles") or "[]")),
        "reference": row.get("auth_id"), "data": _v2_data(row),
        "adjuncts": {}, "nozzle": row.get("nozzle"), "product": row.get("product"),
        "volume_cl": row.get("volume_cl"), "amount_cents": row.get("amount_cents"),
        "charged_cents": row.get("amount_cents"), "price_milli": row.get("price_milli"),
        "totals_before": ({int(k): tuple(v) for k, v in json.loads(totals).items()} if totals else None),
        "reason": {"expired_card": DeclineReason.CARD_EXPIRED,
                   "incorrect_pin": DeclineReason.WRONG_PIN}.get(row.get("reason") or "", None),
        "flags": tuple(json.loads(row.get("flags", "[]"))), "recovered": bool(row.get("recovered", 0)),
        "receipt_started": bool(row.get("receipt_started", 0)),
        "receipt_printed": bool(row.get("receipt_printed", 0)), "synced": bool(row.get("synced", 0)),
        "created_at": created_at, "finished_at": row.get("finished_at"),
    }


def _check_carried_over(j: Journal, rows: list[dict[str, Any]]) -> None:
    assert [r.id for r in j.all_sales()] == [row["id"] for row in rows]
    # unsent completed rows are numbered in creation order; a synced one keeps no number
    completed = [row["id"] for row in rows if row["state"] == "completed" and not row.get("synced")]
    for n, row in enumerate(rows):
        rec = j.get(row["id"])
        seq = completed.index(row["id"]) + 1 if row["id"] in completed else None
        want = _expected(row, 1_700_000_000.0 + n) | {"seq": seq}
        got = {name: getattr(rec, name) for name in SaleRecord.__dataclass_fields__}
        assert got == want, row["id"]
        assert isinstance(rec.state, SaleState)


def test_version_1_journal_is_migrated_with_every_value(path: Path) -> None:
    _v1_journal(path, _V1_SCHEMA, V1_ROWS)
    events_before = _dump(path)["events"]
    j = Journal(path)
    try:
        _check_carried_over(j, V1_ROWS)
        bank = j.get("b-done")
        assert (bank.program, bank.preset, bank.reference, bank.charged_cents) == (
            "bank", Preset.amount(12000), "A1B2C3", 1410)
        assert bank.data == OLD_BANK and BankSummary.from_doc(bank.data).auth_code == "A1B2C3"
        assert j.get("b-declined").reason is DeclineReason.WRONG_PIN       # legacy codes read as reasons
        assert j.get("f-declined").reason is DeclineReason.CARD_EXPIRED
        fleet = j.get("f-pumping")
        assert (fleet.program, fleet.preset, fleet.reference, fleet.totals_before) == (
            "fleet", Preset.volume(4000), "auth-f2", {2: (500, 830)})
        # the filters see the migrated sales as a version-1 terminal saw them
        assert [r.id for r in j.open_sales()] == ["f-approved", "f-pumping", "b-approved"]
        assert [r.id for r in j.sales_in(S.CREATED, S.AUTHORIZING)] == ["f-created", "f-authorizing",
                                                                        "b-authorizing"]
        assert [r.id for r in j.unsynced()] == ["f-unsynced", "b-done"]
        assert [r.id for r in j.unprinted()] == ["f-unsynced", "b-done"]
        # the events and the key-value store are kept as they were
        assert [s for s, _ in j.events("f-done")] == ["created", "completed"]
        assert j.events("f-done")[0][1] == {"pump": 1, "kind": "fleet"}
        assert j.get_value("terminal_config") == '{"version": 2}' and j.get_value("acquirer_stan") == "000042"
        assert j._db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.VERSION
        # the migrated sales go on along the machine's moves, and only those
        j.transition("f-pumping", S.COMPLETED, nozzle=2, volume_cl=300, amount_cents=498, charged_cents=498)
        with pytest.raises(JournalError, match="no such move"):
            j.transition("f-done", S.APPROVED)
        j.flag("b-approved", "attendant_check")
    finally:
        j.close()
    after = _dump(path)
    assert after["version"] == journal_schema.VERSION
    assert set(after["schema"]) == {"sales", "events", "kv", "sqlite_sequence"}       # no sales_v1 left
    raw = sqlite3.connect(path)
    try:
        columns = {row[1] for row in raw.execute("PRAGMA table_info(sales)")}
    finally:
        raw.close()
    assert {"program", "preset_kind", "preset_value", "reference", "data", "adjuncts",
            "charged_cents"} <= columns
    assert not {"kind", "auth_id", "allowed_cl", "allowed_cents", "bank"} & columns
    assert after["events"][:len(events_before)] == events_before


def test_first_release_journal_is_migrated_too(path: Path) -> None:
    first = [{k: v for k, v in row.items() if k != "kind"} for row in V1_ROWS if row["kind"] == "fleet"]
    _v1_journal(path, _FIRST_SCHEMA, first)
    raw = sqlite3.connect(path)
    try:
        assert "kind" not in {row[1] for row in raw.execute("PRAGMA table_info(sales)")}
    finally:
        raw.close()
    j = Journal(path)
    try:
        _check_carried_over(j, first)
        assert {r.program for r in j.all_sales()} == {"fleet"}
        assert j.get("f-approved").preset == Preset.volume(15000)
        assert j._db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.VERSION
    finally:
        j.close()


def test_opening_a_migrated_journal_again_changes_nothing(path: Path) -> None:
    _v1_journal(path, _V1_SCHEMA, V1_ROWS)
    Journal(path).close()
    once = _dump(path)
    j = Journal(path)
    try:
        _check_carried_over(j, V1_ROWS)
    finally:
        j.close()
    assert _dump(path) == once
    assert once["version"] == journal_schema.VERSION


def test_opening_a_new_journal_again_changes_nothing(path: Path) -> None:
    j = Journal(path)
    begin(j, "s1")
    complete(j, "s1")
    j.close()
    once = _dump(path)
    assert once["version"] == journal_schema.VERSION
    Journal(path).close()
    assert _dump(path) == once


@pytest.mark.parametrize("schema", [_V1_SCHEMA, _FIRST_SCHEMA], ids=["version-1", "first-release"])
def test_a_failing_migration_leaves_the_old_journal_intact(path: Path, schema: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rows = V1_ROWS if schema is _V1_SCHEMA else [
        {k: v for k, v in row.items() if k != "kind"} for row in V1_ROWS if row["kind"] == "fleet"]
    _v1_journal(path, schema, rows)
    before = _dump(path)
    # the copy into the new table fails after the columns were added, the table renamed and the new one
    # created: all of that must be undone
    monkeypatch.setattr(journal_schema, "_FROM_V1", journal_schema._FROM_V1 + " WHERE no_such_column = 1")
    with pytest.raises(JournalError, match="cannot open journal"):
        Journal(path)
    assert _dump(path) == before
    assert before["version"] == 0
    monkeypatch.undo()
    j = Journal(path)                    # the next start migrates it
    try:
        _check_carried_over(j, rows)
    finally:
        j.close()


def test_a_migrated_fleet_sale_still_syncs_against_its_authorization(path: Path) -> None:
    _v1_journal(path, _V1_SCHEMA, V1_ROWS)
    j = Journal(path)
    try:
        assert sale_payload(j.get("b-done"), "T-0001", "ST-1")["auth_id"] is None   # the acquirer settles
        for sid, auth in (("f-unsynced", "auth-f4"), ("f-pumping", "auth-f2"), ("f-approved", "auth-f1")):
            rec = j.get(sid)
            assert sale_payload(rec, "T-0001", "ST-1")["auth_id"] == auth, sid
    finally:
        j.close()


def test_journal_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    path.parent.mkdir()
    path.write_bytes(b"")
    path.chmod(0o644)                                   # a journal from before: narrowed at open
    journal = Journal(path)
    try:
        journal.begin_sale("s1", 1, "707700******0019", "tok", program="fleet")
        made = sorted(p for p in path.parent.iterdir())
        assert [p.name for p in made] == ["journal.db", "journal.db-shm", "journal.db-wal"]
        assert {p.stat().st_mode & 0o777 for p in made} == {0o600}
    finally:
        journal.close()


@pytest.mark.parametrize(("column", "value"), [
    ("nozzles", "["),                     # JSON cut short
    ("state", "bogus"),                   # a state the machine does not have
    ("flags", b"\x86\xff"),               # a BLOB that is not UTF-8
    ("totals_before", '{"1": 5}'),        # JSON of the wrong shape
    ("totals_before", '{"1": [5]}'),      # one figure where two belong
])
def test_a_damaged_row_is_a_journal_error_and_does_not_hide_the_others(tmp_path: Path, column: str,
                                                                       value: Any) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    try:
        journal.begin_sale("bad", 1, "707700******0019", "tok", program="fleet")
        journal.begin_sale("good", 2, "707700******0027", "tok2", program="fleet")
        with sqlite3.connect(path) as db:
            db.execute(f"UPDATE sales SET {column} = ? WHERE id = 'bad'", (value,))
        with pytest.raises(JournalError, match="damaged") as err:
            journal.get("bad")
        assert err.value.context["sale_id"] == "bad"
        assert [r.id for r in journal.all_sales()] == ["good"]       # the bad row stays on disk
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM sales").fetchone()[0] == 2
    finally:
        journal.close()


def test_a_damaged_event_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    try:
        journal.begin_sale("s1", 1, "707700******0019", "tok", program="fleet")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE events SET detail = ?", (b"\xff{",))
        with pytest.raises(JournalError, match="damaged"):
            journal.events("s1")
    finally:
        journal.close()
