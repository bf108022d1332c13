"""Store-and-forward of acquirer advices and held card contexts: durability, order, repeats,
acknowledgement, data at rest."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

from contracts.errors import ConfigError, HostUnavailable, MessageError, SyncError
from drivers.acquirer import AcquirerLink
from drivers.acquirer.tcp import response_mti
from firmware.acquirer import messages as m
from firmware.acquirer.saf import MAX_REFUSALS, AdviceKind, StoreAndForward
from hostsim.acquirer_host import AcquirerHost

PAN = "5413330089010434"  # Mastercard test PAN from the public M/TIP card set
KEY = bytes(range(32))
TERMINAL = m.Terminal("AFD00002", "000000000654321", "FORECOURT 2")
CARD = m.Card(pan=PAN, expiry="2912", entry_mode="051", pan_sequence="00")
WHEN = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def _original(stan: int) -> m.Original:
    return m.Original(f"{stan - 1:06d}", "0601115959", rrn=f"{stan - 1:012d}", auth_code="A1B2C3")


def completion(stan: int) -> bytes:
    return m.completion_advice(terminal=TERMINAL, card=CARD, original=_original(stan),
                               authorized_amount=10000, dispensed_amount=4321, stan=stan, when=WHEN,
                               fuel=[m.FuelLine("019", 26_050, 1_659, 4321)])


def reversal(stan: int) -> bytes:
    return m.reversal_advice(terminal=TERMINAL, card=CARD,
                             original=_original(stan), amount=10000,
                             reason=m.ReversalReason.NOTHING_DISPENSED, stan=stan, when=WHEN)


class FakeLink:
    """Answers 00 unless told otherwise; can fail after n exchanges."""

    def __init__(self, fail_after: int | None = None, code: str = "00") -> None:
        self.sent: list[bytes] = []
        self.fail_after = fail_after
        self.code = code

    def exchange(self, raw: bytes, timeout: float | None = None) -> bytes:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise HostUnavailable("no answer")
        self.sent.append(raw)
        doc = m.decode(raw)
        return m.encode({"t": response_mti(doc["t"]), "11": doc["11"], "39": self.code})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "saf.sqlite"


def test_enqueue_is_idempotent_per_sale_and_kind(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    first = saf.enqueue(AdviceKind.COMPLETION, "sale-1", completion(2))
    assert saf.enqueue("completion", "sale-1", completion(2)) == first
    other = saf.enqueue(AdviceKind.REVERSAL, "sale-1", reversal(3))
    assert other != first
    assert [(p.id, p.kind, p.sale_id, p.attempts) for p in saf.pending()] == [
        (first, AdviceKind.COMPLETION, "sale-1", 0), (other, AdviceKind.REVERSAL, "sale-1", 0)]
    assert saf.pending()[0].raw == completion(2) and PAN not in repr(saf.pending()[0])
    saf.close()


def test_kind_must_match_the_message(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    with pytest.raises(MessageError):
        saf.enqueue(AdviceKind.COMPLETION, "sale-1", reversal(3))
    with pytest.raises(ValueError):
        saf.enqueue("refund", "sale-1", completion(2))
    saf.close()


def test_forward_in_order_and_ack(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    saf.enqueue(AdviceKind.REVERSAL, "b", reversal(4))
    link = FakeLink()
    report = saf.forward(link)
    assert (report.acked, report.refused, report.stopped) == (2, 0, False)
    assert [raw[:4] for raw in link.sent] == [b"0220", b"0420"]
    assert saf.pending() == []
    assert saf.forward(link).acked == 0 and len(link.sent) == 2
    saf.close()


def test_unreachable_host_stops_and_repeats_next_time(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    saf.enqueue(AdviceKind.COMPLETION, "b", completion(4))
    down = FakeLink(fail_after=0)
    assert saf.forward(down).stopped
    assert [p.attempts for p in saf.pending()] == [1, 0]  # counted before the send; b never tried
    saf.close()

    saf = StoreAndForward(path, KEY)  # restart: reopen the file
    link = FakeLink()
    assert saf.forward(link).acked == 2
    assert [raw[:4] for raw in link.sent] == [b"0221", b"0220"]  # a may have reached the host: repeat
    assert link.sent[0][4:] == completion(2)[4:]  # same message, same STAN
    saf.close()


def test_refused_advice_stays_pending_without_blocking(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.REVERSAL, "a", reversal(2))
    saf.enqueue(AdviceKind.REVERSAL, "b", reversal(4))
    report = saf.forward(FakeLink(code="30"))
    assert (report.acked, report.refused) == (0, 2)
    assert [(p.attempts, p.last_response) for p in saf.pending()] == [(1, "30"), (1, "30")]
    link = FakeLink()
    assert saf.forward(link).acked == 2 and [raw[:4] for raw in link.sent] == [b"0421", b"0421"]
    saf.close()


def test_an_advice_refused_again_and_again_is_parked_not_resent(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    refusing = FakeLink(code="30")
    reports = [saf.forward(refusing) for _ in range(MAX_REFUSALS + 2)]
    assert len(refusing.sent) == MAX_REFUSALS                       # the last two rounds sent nothing
    assert [r.parked for r in reports] == [0] * (MAX_REFUSALS - 1) + [1, 0, 0]
    assert saf.pending() == []
    [kept] = saf.pending(parked=True)
    assert kept.sale_id == "a" and kept.last_response == "30" and kept.raw == completion(2)
    saf.close()
    assert StoreAndForward(path, KEY).pending(parked=True)[0].id == kept.id     # kept across a restart


def test_mark_acked_erases_the_message(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    advice_id = saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    saf.mark_acked(advice_id)
    saf.mark_acked(advice_id)  # twice is fine
    assert saf.pending() == []
    with pytest.raises(SyncError):
        saf.mark_acked(999)
    saf.close()


def test_no_pan_at_rest(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    for n in range(5):
        saf.enqueue(AdviceKind.COMPLETION, f"sale-{n}", completion(2 * n + 2))
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert any(p.name.endswith("-wal") for p in files)  # WAL mode
    for f in files:
        data = f.read_bytes()
        assert PAN.encode() not in data and PAN[-10:].encode() not in data
    saf.close()


def test_wrong_key_cannot_read_and_bad_key_is_refused(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    saf.close()
    other = StoreAndForward(path, os.urandom(32))
    with pytest.raises(SyncError):
        other.pending()
    other.close()
    with pytest.raises(ConfigError):
        StoreAndForward(path, b"short")


def test_pragmas(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    assert saf._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert saf._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    saf.close()


def test_forward_to_the_simulated_host_over_tcp(path: Path) -> None:
    answers = iter(["timeout", "approve", "approve"])
    with AcquirerHost({}, rules=lambda doc: next(answers)) as host:
        host.remember("000001", "0601115959", 10000)
        host.remember("000003", "0601115959", 10000)
        link = AcquirerLink("127.0.0.1", host.port, connect_timeout=1, response_timeout=0.3)
        saf = StoreAndForward(path, KEY)
        saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
        saf.enqueue(AdviceKind.REVERSAL, "b", reversal(4))
        assert saf.forward(link).stopped
        assert saf.forward(link).acked == 2
        assert [(a["t"], a["11"]) for a in host.advices] == [("0220", "000002"), ("0221", "000002"),
                                                             ("0420", "000004")]
        link.close()
        saf.close()


# A sale's card context, as the sale flow would serialize it (the format is the caller's): PAN, expiry,
# PSN, original STAN/time, RRN, auth code, approved amount, ICC data.
CONTEXT = f"{PAN}|2912|00|000001|0601115959|515212000001|A1B2C3|10000|9F2608C2A3D4E5F6071829".encode()


def disk_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)}


def test_held_context_survives_a_restart_and_can_be_replaced(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    assert saf.held("sale-1") is None and saf.held_sales() == []
    saf.hold("sale-1", CONTEXT)
    saf.close()

    saf = StoreAndForward(path, KEY)  # restart: reopen the file
    assert saf.held("sale-1") == CONTEXT
    saf.hold("sale-1", CONTEXT + b"|4321")
    assert saf.held("sale-1") == CONTEXT + b"|4321" and saf.held_sales() == ["sale-1"]
    saf.hold("sale-2", b"")  # empty is a context too
    assert saf.held("sale-2") == b""
    saf.close()


def test_held_sales_oldest_first_and_drop(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    for sale in ("c", "a", "b"):
        saf.hold(sale, CONTEXT)
    saf.hold("c", CONTEXT + b"|again")  # a replacement keeps the sale's place
    assert saf.held_sales() == ["c", "a", "b"]
    saf.drop("a")
    saf.drop("a")  # twice is fine
    saf.drop("never-held")
    assert saf.held_sales() == ["c", "b"] and saf.held("a") is None
    saf.hold("a", CONTEXT)  # held again after a drop: now the newest
    assert saf.held_sales() == ["c", "b", "a"]
    saf.close()


def test_no_card_data_of_a_held_context_at_rest(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    for n in range(5):
        saf.hold(f"sale-{n}", CONTEXT)
    files = disk_bytes(path)
    assert any(name.endswith("-wal") for name in files) and sum(map(len, files.values())) > 0
    for data in files.values():
        for secret in (PAN, PAN[-10:], "515212000001", "A1B2C3", "9F2608C2A3D4E5F6071829"):
            assert secret.encode() not in data
    saf.close()


def test_held_context_with_a_wrong_key(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.hold("sale-1", CONTEXT)
    saf.close()
    other = StoreAndForward(path, os.urandom(32))
    with pytest.raises(SyncError):
        other.held("sale-1")
    assert other.held_sales() == ["sale-1"]  # ids are not secret; the context stays for the right key
    other.close()


def test_a_context_is_bound_to_its_sale(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.hold("sale-1", CONTEXT)
    saf.hold("sale-2", CONTEXT.replace(PAN.encode(), b"4761739001010010"))
    saf.close()
    with sqlite3.connect(path) as db:  # swap the sealed contexts (nonce and ciphertext) between the rows
        rows = {sale: (nonce, sealed) for sale, nonce, sealed in
                db.execute("SELECT sale_id, nonce, sealed FROM card_context")}
        for sale, other in (("sale-1", "sale-2"), ("sale-2", "sale-1")):
            db.execute("UPDATE card_context SET nonce = ?, sealed = ? WHERE sale_id = ?",
                       (*rows[other], sale))
    db.close()
    saf = StoreAndForward(path, KEY)
    for sale in ("sale-1", "sale-2"):
        with pytest.raises(SyncError):
            saf.held(sale)
    saf.close()


def test_a_context_is_not_an_advice(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "sale-1", completion(2))
    saf.hold("sale-1", completion(2))
    saf.close()
    with sqlite3.connect(path) as db:  # put an advice's sealed message in the context row of its sale
        nonce, sealed = db.execute("SELECT nonce, sealed FROM advice WHERE sale_id = 'sale-1'").fetchone()
        db.execute("UPDATE card_context SET nonce = ?, sealed = ? WHERE sale_id = 'sale-1'", (nonce, sealed))
    db.close()
    saf = StoreAndForward(path, KEY)
    with pytest.raises(SyncError):
        saf.held("sale-1")
    saf.close()


def test_settle_queues_the_advice_and_erases_the_context(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.hold("sale-1", CONTEXT)
    saf.hold("sale-2", CONTEXT)
    assert not saf.has_advice("sale-1")
    advice_id = saf.settle(AdviceKind.COMPLETION, "sale-1", completion(2))
    assert saf.held("sale-1") is None and saf.held_sales() == ["sale-2"]
    assert saf.has_advice("sale-1") and saf.has_advice("sale-1", AdviceKind.COMPLETION)
    assert not saf.has_advice("sale-1", "reversal") and not saf.has_advice("sale-2")
    saf.close()

    saf = StoreAndForward(path, KEY)  # both halves are durable
    assert saf.held("sale-1") is None
    assert [(p.id, p.kind, p.sale_id, p.raw) for p in saf.pending()] == [
        (advice_id, AdviceKind.COMPLETION, "sale-1", completion(2))]
    # idempotent: the same id, even when the context was held again meanwhile; it is erased again
    saf.hold("sale-1", CONTEXT)
    assert saf.settle("completion", "sale-1", completion(2)) == advice_id
    assert saf.enqueue(AdviceKind.COMPLETION, "sale-1", completion(2)) == advice_id
    assert saf.held("sale-1") is None and len(saf.pending()) == 1
    # without a held context it is an enqueue
    reversal_id = saf.settle(AdviceKind.REVERSAL, "sale-3", reversal(4))
    assert reversal_id != advice_id and saf.has_advice("sale-3", AdviceKind.REVERSAL)
    saf.mark_acked(advice_id)
    # acknowledged still counts: enqueue would not re-add
    assert saf.has_advice("sale-1", AdviceKind.COMPLETION)
    with pytest.raises(ValueError):
        saf.has_advice("sale-1", "refund")
    saf.close()


def test_settle_is_all_or_nothing(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.hold("sale-1", CONTEXT)
    with pytest.raises(MessageError):  # refused before anything is written
        saf.settle(AdviceKind.COMPLETION, "sale-1", reversal(3))
    assert saf.held("sale-1") == CONTEXT and not saf.has_advice("sale-1")
    # make the erasure fail inside the transaction: the advice must not be queued either
    saf._db.execute("CREATE TEMP TRIGGER keep BEFORE DELETE ON card_context "
                    "BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(SyncError):
        saf.settle(AdviceKind.COMPLETION, "sale-1", completion(2))
    assert saf.held("sale-1") == CONTEXT and not saf.has_advice("sale-1") and saf.pending() == []
    saf._db.execute("DROP TRIGGER keep")
    assert saf.settle(AdviceKind.COMPLETION, "sale-1", completion(2)) > 0
    assert saf.held("sale-1") is None and len(saf.pending()) == 1
    saf.close()


def test_existing_file_without_the_context_table_is_upgraded(path: Path) -> None:
    saf = StoreAndForward(path, KEY)
    saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))
    saf.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE card_context")
    db.close()
    saf = StoreAndForward(path, KEY)
    assert len(saf.pending()) == 1 and saf.held_sales() == []
    saf.hold("b", CONTEXT)
    assert saf.held("b") == CONTEXT
    saf.close()


class _Crash(BaseException):
    """The terminal dies (power cut): not an error the forwarder could catch."""


def test_crash_after_the_0230_before_marking_it_acked_repeats_and_settles_once(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash window 5: the 0230 arrived, the terminal died before mark_acked. After the restart the advice
    goes again as a repeat (0221, same STAN, same original and RRN); the host sees both and settles once."""
    with AcquirerHost({}) as host:
        host.remember("000001", "0601115959", 10000)
        link = AcquirerLink("127.0.0.1", host.port, connect_timeout=1, response_timeout=1)
        saf = StoreAndForward(path, KEY)
        saf.enqueue(AdviceKind.COMPLETION, "a", completion(2))

        def crash(self: StoreAndForward, advice_id: int) -> None:
            raise _Crash

        with monkeypatch.context() as patch:
            patch.setattr(StoreAndForward, "mark_acked", crash)
            with pytest.raises(_Crash):
                saf.forward(link)
        saf.close()
        saf = StoreAndForward(path, KEY)            # the restart
        assert saf.forward(link).acked == 1 and not saf.pending()
        first, repeat = host.advices
        assert (first["t"], repeat["t"]) == ("0220", "0221")
        assert all(first[k] == repeat[k] for k in ("11", "37", "38", "90", "4", "63"))
        assert host.settled_total == 4321 and len(host.settlements) == 1 and host.repeats == 1
        link.close()
        saf.close()
