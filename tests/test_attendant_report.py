"""Shift reports (firmware.attendant.report and .shift) over the real journal: for any sequence of sales
(completed, declined, left open and completed later), top-ups and Z reports, each Z report's totals equal
the journal's sales completed in its shift, every completed sale falls in exactly one shift, and the
groups (product, payment, attendant) add up to the total (hypothesis)."""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.attendant.paper import report_lines
from firmware.attendant.report import NO_ATTENDANT, Shift, Totals, build_report
from firmware.attendant.shift import ShiftBook
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord

S = SaleState

_sale = st.tuples(st.sampled_from(["fleet", "bank", "cash"]), st.sampled_from(["diesel", "petrol95"]),
                  st.integers(0, 9000), st.integers(0, 15000), st.integers(0, 100),
                  st.sampled_from(["A-1", "A-2", None]))
_step = st.one_of(st.tuples(st.just("sale"), _sale), st.tuples(st.just("open"), _sale),
                  st.tuples(st.just("finish"), st.just(None)), st.tuples(st.just("declined"), st.just(None)),
                  st.tuples(st.just("topup"), st.integers(1, 50_000)), st.tuples(st.just("z"), st.just(None)))


class Clock:
    def __init__(self) -> None:
        self.t = 1_750_000_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def _begin(j: Journal, program: str, attendant: str | None) -> str:
    sid = str(uuid.uuid4())
    j.begin_sale(sid, 1, "000000******0000", "t" * 32, program=program)
    j.transition(sid, S.AUTHORIZING, data={"attendant": attendant} if attendant else {})
    return sid


def _complete(j: Journal, sid: str, sale: tuple[Any, ...], at: float) -> None:
    _, product, volume, amount, off, _ = sale
    j.transition(sid, S.APPROVED, preset=Preset.amount(20000), nozzles=[1])
    j.transition(sid, S.COMPLETED, nozzle=1, product=product, volume_cl=volume, amount_cents=amount,
                 charged_cents=amount - min(off, amount), price_milli=1659, finished_at=at)


def _sum(sales: list[SaleRecord]) -> Totals:
    return Totals(sum(1 for r in sales if (r.volume_cl or 0) > 0), sum(r.volume_cl or 0 for r in sales),
                  sum(r.amount_cents or 0 for r in sales), sum(r.charged_cents or 0 for r in sales))


def _add(groups: dict[str, Totals]) -> Totals:
    return Totals(*(sum(getattr(t, f) for t in groups.values())
                    for f in ("sales", "volume_cl", "amount_cents", "charged_cents")))


@settings(max_examples=40, deadline=None)
@given(st.lists(_step, max_size=25))
def test_every_z_report_holds_exactly_the_sales_completed_in_its_shift(steps: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        j = Journal(Path(tmp) / "journal.db")
        clock = Clock()
        book = ShiftBook(j, clock)
        shift_sales: list[list[str]] = [[]]          # the ids completed in each shift, as the steps ran
        topups: list[int] = [0]
        waiting: list[tuple[str, tuple[Any, ...]]] = []
        reports = []
        for kind, arg in steps:
            if kind in ("sale", "open"):
                sid = _begin(j, arg[0], arg[5])
                if kind == "sale":
                    _complete(j, sid, arg, clock())
                    shift_sales[-1].append(sid)
                else:
                    waiting.append((sid, arg))
            elif kind == "finish" and waiting:
                sid, sale = waiting.pop(0)
                _complete(j, sid, sale, clock())
                shift_sales[-1].append(sid)
            elif kind == "declined":
                sid = _begin(j, "fleet", None)
                j.transition(sid, S.DECLINED)
            elif kind == "topup":
                book.record("A-1", "topup", "card:707702******0011", paid_cents=arg)
                topups[-1] += arg
            elif kind == "z":
                reports.append(book.close("A-1")[0])
                shift_sales.append([])
                topups.append(0)
        reports.append(book.report())                  # the open shift's X report
        done = {r.id: r for r in j.all_sales() if r.state is S.COMPLETED}
        assert sorted(i for ids in shift_sales for i in ids) == sorted(done)
        for n, (report, ids, cash) in enumerate(zip(reports, shift_sales, topups, strict=True), 1):
            assert report.shift.number == n
            assert report.total == _sum([done[i] for i in ids])
            for groups in (report.by_product, report.by_payment, report.by_attendant):
                assert _add(dict(groups)) == report.total
            assert sum(c for _, c in report.topups.values()) == cash
            assert report.cash_cents == report.by_payment.get("cash", Totals()).charged_cents + cash
            attendants = {done[i].data.get("attendant") or NO_ATTENDANT for i in ids}
            assert set(report.by_attendant) == attendants
        for n, report in enumerate(reports[:-1], 1):
            kept = book.z_report(n)
            assert kept is not None and kept["total"] == report.total.doc() and kept["shift"] == n
        j.close()


def test_a_report_leaves_out_what_is_not_its_shifts_and_counts_a_sale_once() -> None:
    def rec(seq: int | None, state: SaleState = S.COMPLETED, sid: str = "") -> SaleRecord:
        return SaleRecord(id=sid or str(uuid.uuid4()), state=state, pump=1, program="cash", card_masked="x",
                          card_token="t", preset=None, nozzles=(1,), reference="", data={"attendant": "A-1"},
                          adjuncts={}, nozzle=1, product="diesel", volume_cl=100, amount_cents=166,
                          charged_cents=166, price_milli=1659, totals_before=None, reason=None, flags=(),
                          recovered=False, receipt_started=False, receipt_printed=False, synced=False,
                          created_at=0.0, finished_at=None, seq=seq)
    twice = rec(7, sid="same")
    given = [rec(5), rec(None), rec(6, S.PUMP_AUTHORIZED), twice, twice, rec(8)]
    report = build_report(Shift(2, 0.0, 5), given)
    assert report.total == Totals(2, 200, 332, 332) and report.last_seq == 8
    assert dict(report.by_attendant) == {"A-1": Totals(2, 200, 332, 332)}
    empty = build_report(Shift(3, 0.0, 8), [])
    assert empty.total == Totals() and empty.last_seq == 8
    lines = [line.text for line in report_lines(report, kind="Z", station_name="Main St", station="ST-1",
                                                  terminal="T-1", currency="EUR",
                                                  at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), attendant="A-1")]
    assert "Z REPORT - SHIFT 2" in lines[3] and any(t.startswith("TOTAL") and t.endswith("3.32 EUR")
                                                     for t in lines)
    assert all(len(t) <= 42 for t in lines)
    assert any(t.startswith("Sale numbers") and t.endswith("6..8") for t in lines)
