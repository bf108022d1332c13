"""Issue 10's crash windows on the sale machine with its fakes (tests/test_sale_machine.py's Env): a crash
at each point, the pump moving on while the terminal is down, then a restart that counts every litre and
cent once and leaves nothing held; and the registry's side of window 1. The whole-system versions are in
tests/e2e/test_crash_windows.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import encipher_pinblock_iso_4

from firmware.hostlink import sale_payload
from firmware.sale.machine import SaleState
from registry.models import Authorization
from registry.service import authorize
from tests import test_registry_service as reg
from tests.sale_fakes import Crash
from tests.test_sale_machine import Env, amount, env_factory, litres_ml

__all__ = ["env_factory"]

S = SaleState
FILL = ("lift", ("flow", 800), "hang_up")


def pump_moves_on(env: Env, cl: int = 300) -> None:
    """While the terminal is down the pump is power cycled (its filling display is lost) and sells cl
    more under the attendant's key: its figures now say something else than the sale's."""
    pump = env.pumps.pumps[1]
    env.pumps._play(1, "restart")
    vol, amt = pump.totals[1]
    pump.totals[1] = (vol + cl, amt + amount(cl))


# -- window 4: the 0220 queued, "completed" not journaled -----------------------------------------------
@pytest.mark.parametrize("at", [("before", "completed"), ("after", "figures"), ("before", "figures")],
                         ids=lambda a: ":".join(a))
def test_the_completion_advice_and_the_journal_carry_the_same_figures(env_factory: Any,
                                                                      at: tuple[str, str]) -> None:
    env: Env = env_factory("bank", events=FILL)
    env.journal.crash = at
    with pytest.raises(Crash):
        env.runner.serve(env.card)
    queued = env.advices()
    figures_journaled = at != ("before", "figures")
    assert [k for k, _ in queued] == (["completion"] if at == ("before", "completed") else [])
    pump_moves_on(env)

    env.restart()
    env.runner.recover(pump_wait=1.0)
    env.runner.recover(pump_wait=1.0)

    (rec,) = env.journal.all_sales()
    ((kind, doc),) = env.advices()                 # one advice, the one queued before the crash if any
    assert kind == "completion" and (not queued or queued[0][1] == doc)
    booked = int(doc["4"])
    assert litres_ml(doc) == 10 * (rec.volume_cl or 0)      # the litres booked are the litres journaled
    assert rec.state is S.COMPLETED and rec.recovered and not env.runner.needs_recovery()
    if figures_journaled:       # the figures settled before the crash are the ones booked and completed
        assert (rec.volume_cl, rec.amount_cents, rec.charged_cents) == (800, amount(800), amount(800))
        assert "settled_from_totals" not in rec.flags
    assert booked == rec.charged_cents == sale_payload(rec, "T-0001", "ST-1")["amount_cents"]
    assert len(env.printer.papers) == 1 and env.saf.held_sales() == []


def test_a_sale_settled_then_crashed_is_not_read_again_from_the_pump(env_factory: Any) -> None:
    env: Env = env_factory("fleet", events=FILL)
    env.journal.crash = ("after", "figures")
    with pytest.raises(Crash):
        env.runner.serve(env.card)
    pump_moves_on(env)
    env.pumps.fail("totals", AssertionError("recovery must not read the pump again"))
    env.restart()
    env.runner.recover(pump_wait=1.0)
    (rec,) = env.journal.all_sales()
    assert (rec.state, rec.volume_cl, rec.amount_cents) == (S.COMPLETED, 800, amount(800))
    env.registry.book(sale_payload(rec, "T-0001", "ST-1"))
    assert env.registry.holds == set()


# -- window 1: the registry approved, "approved" not journaled --------------------------------------------
def test_a_fleet_hold_granted_before_the_crash_is_closed_on_restart(env_factory: Any) -> None:
    env: Env = env_factory("fleet", events=FILL)
    env.journal.crash = ("before", "approved")
    with pytest.raises(Crash):
        env.runner.serve(env.card)
    (request,) = env.registry.requests
    assert env.registry.holds == {request}          # the registry holds litres the journal never saw
    (rec,) = env.journal.all_sales()
    assert rec.state is S.AUTHORIZING and rec.data["registry_request"] == request

    env.restart()
    env.runner.recover(pump_wait=1.0)
    (rec,) = env.journal.all_sales()
    assert (rec.state, rec.volume_cl, rec.recovered) == (S.COMPLETED, 0, True)
    assert env.pumps.authorized == [] and env.printer.papers == []
    (synced,) = env.journal.unsynced()
    payload = sale_payload(synced, "T-0001", "ST-1")
    assert (payload["auth_id"], payload["volume_cl"], payload["amount_cents"]) == (request, 0, 0)
    env.registry.book(payload)
    assert env.registry.holds == set()


# -- window 1, the registry's side: the hold is keyed by the request id, and a sale of nothing closes it ----
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[reg.Env]:
    yield from reg.sqlite_env(tmp_path)


def test_the_registry_keys_its_hold_by_the_request_id_and_a_sale_of_nothing_closes_it(
        registry: reg.Env) -> None:
    before = registry.usage(1)
    doc = registry.auth(reg.ACME)
    assert doc["approved"] and doc["auth_id"] == doc["request_id"]
    assert registry.usage(1) == before + doc["allowed_cl"]          # litres held for the sale
    again = {"request_id": doc["request_id"], "terminal": "T-0001", "station": "ST-001", "pump": 1,
             "pan": reg.ACME, "expiry": "2912",
             "pin_block": encipher_pinblock_iso_4(reg.PIN_KEY, "1234", reg.ACME).hex().upper()}
    with registry.sessions() as s:          # a request id seen before grants nothing more
        assert not authorize(s, registry.keys, again, reg.NOW).approved
    assert registry.count(Authorization) == 1

    # the restarted terminal's sale of nothing, naming the request id, ends the hold
    _, ack = registry.sale(doc["request_id"], volume_cl=0, nozzle=0, product=None, amount_cents=0,
                           price_milli=0, recovered=True)
    assert ack == {"sale_id": ack["sale_id"], "status": "stored", "reason": ""}
    assert registry.usage(1) == before
    assert registry.count(Authorization, Authorization.status == "open") == 0
