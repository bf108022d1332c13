"""Store-and-forward of acquirer advices: durability, order, repeats, acknowledgement, data at rest."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from drivers.acquirer import AcquirerLink
from drivers.acquirer.tcp import response_mti
from firmware.acquirer import messages as m
from firmware.acquirer.saf import AdviceKind, StoreAndForward
from firmware.errors import ConfigError, HostUnavailable, MessageError, SyncError
from hostsim.acquirer_host import AcquirerHost

PAN = "5413330089010434"  # Mastercard test PAN from the public M/TIP card set
KEY = bytes(range(32))
TERMINAL = m.Terminal("AFD00002", "000000000654321", "FORECOURT 2")
CARD = m.Card(pan=PAN, expiry="2912", entry_mode="051", pan_sequence="00")
WHEN = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def completion(stan: int) -> bytes:
    return m.completion_advice(terminal=TERMINAL, card=CARD, original=m.Original(f"{stan - 1:06d}", "0601115959"),
                               authorized_amount=10000, dispensed_amount=4321, stan=stan, when=WHEN)


def reversal(stan: int) -> bytes:
    return m.reversal_advice(terminal=TERMINAL, card=CARD, original=m.Original(f"{stan - 1:06d}", "0601115959"),
                             amount=10000, reason=m.ReversalReason.NOTHING_DISPENSED, stan=stan, when=WHEN)


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
