"""Adjunct cards (a voucher, a loyalty card) ride along the next payment only while it follows soon:
one read by a cardholder who walked away must not discount the next cardholder's sale."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.screens import Screen
from firmware.programs.base import Contactless
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from tests.sale_fakes import FakeClock, FakePumps, ListPrinter, ScriptedCardholder, make_runner
from tests.test_house_card import HouseCard, Voucher, house_card_in


@pytest.mark.parametrize(("wait", "discounted"), [(5.0, True), (60.0, True), (61.0, False)])
def test_a_voucher_rides_along_only_the_payment_that_follows_in_time(tmp_path: Path, wait: float,
                                                                       discounted: bool) -> None:
    clock = FakeClock()
    pumps = FakePumps(clock)
    pumps.customer("lift", ("flow", 1000), "hang_up")
    port = ScriptedCardholder(vehicle=["4711", "4712"])
    journal = Journal(tmp_path / "journal.db")
    try:
        runner = make_runner(journal, [HouseCard()], port, pumps, ListPrinter(), clock, adjuncts=[Voucher()])
        assert runner.serve(Contactless(b"VCH-100")) is None
        assert port.shown()[-1] == Screen.CARD_READ
        clock.advance(wait)
        sale_id = runner.serve(house_card_in())
        assert sale_id is not None
        rec = journal.get(sale_id)
        assert rec.state is SaleState.COMPLETED and rec.amount_cents
        assert rec.adjuncts == ({"voucher": {"code": "VCH-100"}} if discounted else {})
        assert rec.charged_cents == rec.amount_cents - (100 if discounted else 0)
        second = runner.serve(house_card_in())            # the next sale never inherits the voucher
        assert second is not None and journal.get(second).adjuncts == {}
    finally:
        journal.close()
