"""Issue 10's crash windows of sale sync, whole system: 6, the terminal SIGKILLed after the registry stored
a sale and before the terminal marked it synced; 7, mosquitto SIGKILLed while sales, acknowledgements and
an authorization request are queued in it. After the restart every litre and cent is counted once, nothing
is lost and no hold on a wallet outlives its sale.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest
from sqlalchemy import select

from contracts.pump import PumpState
from hostsim.scenarios import Run
from hostsim.world import Simulator
from registry.db import open_database
from registry.models import Authorization
from registry.service import held_sales, sale_conflicts, wallet_usage_cl
from tests.e2e.crash_kit import StartSim, cents, until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WALLET = 1                      # the wallet of card 0 (ACME) in the seed


class Books:
    """The registry's view, read from its database: holds, wallet usage, held sales and conflicts."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def read(self) -> tuple[dict[str, str], int, int, int]:
        engine, sessions = open_database(self.sim.registry_url)
        try:
            with sessions() as s:
                holds = {a.id: a.status for a in s.scalars(select(Authorization)).all()}
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                return holds, wallet_usage_cl(s, WALLET, now), len(held_sales(s)), len(sale_conflicts(s))
        finally:
            engine.dispose()


def fleet_sale(run: Run, volume: int) -> str:
    """Card 0 authorized, pump 1 nozzle 1 fills volume; the sale's id."""
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark, timeout=30)
    run.remove()
    run.fill(1, 1, volume)
    return run.last_sale_id()


def completed(sim: Simulator, sale_id: str) -> bool:
    journal = sim.journal()
    try:
        return journal.get(sale_id).state == "completed"
    finally:
        journal.close()


def terminal_log(sim: Simulator) -> str:
    return (sim.state / "terminal.log").read_text(errors="replace")


# -- window 6: the registry stored the sale, the terminal died before marking it synced ---------------------
def test_killed_after_the_registry_stored_before_synced_counts_once(start_sim: StartSim) -> None:
    sim, run = start_sim("before:synced")
    books = Books(sim)
    _, usage_before, _, _ = books.read()
    sale_id = fleet_sale(run, 1500)
    proc = sim.terminal
    assert proc is not None
    until(lambda: proc.poll() is not None, 30, "the terminal killing itself at the synced mark")
    assert proc.poll() == -signal.SIGKILL
    sim.kill_terminal()
    journal = sim.journal()
    try:
        rec = journal.get(sale_id)
        assert rec.state == "completed" and not rec.synced       # the ack came, the mark did not
    finally:
        journal.close()
    assert [s["sale_id"] for s in sim.registry_sales()] == [sale_id]     # stored before the kill

    mark = sim.panel.mark()
    sim.start_terminal()
    run.wait("idle", mark, timeout=30)
    rec = run.wait_synced(sale_id, timeout=30)
    assert rec.synced and rec.volume_cl == 1500 and rec.amount_cents == cents(1500)
    # the resend was recognised as the same sale: acknowledged "duplicate", stored and counted once
    assert f"sale synced reason= sale_id={sale_id} status=duplicate" in terminal_log(sim)
    sales = sim.registry_sales()
    assert [(s["sale_id"], s["volume_cl"], s["amount_cents"], s["held"]) for s in sales] == [
        (sale_id, 1500, cents(1500), False)]
    holds, usage, held, conflicts = books.read()
    assert list(holds.values()) == ["completed"]                  # the hold ended with the sale
    assert usage == usage_before + 1500 and (held, conflicts) == (0, 0)


# -- window 7: mosquitto killed with sales, acknowledgements and an authorization request in it --------------
def kill_broker(sim: Simulator) -> None:
    proc = sim.mosquitto
    assert proc is not None
    proc.kill(signal.SIGKILL)
    proc.stop()
    sim.mosquitto = None


def authorize_then_registry_away(sim: Simulator, run: Run) -> None:
    """Card 0 authorized on pump 1; then the registry stops, its session (and what is sent to it) kept
    by the broker."""
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark, timeout=30)
    run.remove()
    assert sim.registry is not None
    sim.registry.stop()
    sim.registry = None


def test_broker_killed_with_messages_queued_loses_nothing_and_counts_once(start_sim: StartSim) -> None:
    sim, run = start_sim("")
    books = Books(sim)
    _, usage_before, _, _ = books.read()

    # a sale waits in the broker for the registry, and a second customer's authorization request with it
    authorize_then_registry_away(sim, run)
    run.fill(1, 1, 1000)
    first = run.last_sale_id()
    until(lambda: completed(sim, first), 30, "the sale completed")
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    time.sleep(0.5)             # the request is out (a fleet card shows no screen for it), no registry there
    kill_broker(sim)
    run.wait("host_unavailable", mark, timeout=30)        # declined cleanly, the pump never released
    run.remove()
    assert sim.pump_line.pump(1).state is not PumpState.AUTHORIZED
    journal = sim.journal()
    try:
        (declined,) = [r for r in journal.all_sales() if r.id != first]
        assert declined.state == "declined" and declined.reason is not None
        assert declined.reason.value == "host_unavailable"
        assert not journal.get(first).synced
        assert len(journal.values("release:")) == 1       # in case the registry held litres for it
    finally:
        journal.close()

    sim.start_broker()                                    # empty: it kept nothing (no persistence)
    sim.start_registry()
    rec = run.wait_synced(first, timeout=40)              # the terminal sent it again
    assert rec.synced

    # a sale whose acknowledgement is lost: the terminal is away when the registry answers, then the
    # broker dies again; the terminal sends the sale again and it is counted once
    authorize_then_registry_away(sim, run)
    run.fill(1, 1, 1200)
    second = run.last_sale_id()
    until(lambda: completed(sim, second), 30, "the sale completed")
    time.sleep(1.0)                                       # and sent: the broker keeps it for the registry
    terminal = sim.terminal
    assert terminal is not None
    os.kill(terminal.pid, signal.SIGSTOP)
    try:
        # keepalive 5 s: the broker lets the terminal go after 1.5 of it (MQTT 3.1.2.10); with margin for a
        # loaded machine, or the ack lands in the stopped terminal's socket and is read on SIGCONT
        time.sleep(12.0)
        sim.start_registry()                              # takes the sale from its session, acks into void
        until(lambda: second in {s["sale_id"] for s in sim.registry_sales()}, 30, "the registry storing")
        time.sleep(0.5)
        kill_broker(sim)
    finally:
        os.kill(terminal.pid, signal.SIGCONT)
    sim.start_broker()
    rec = run.wait_synced(second, timeout=40)
    assert rec.synced
    assert f"sale synced reason= sale_id={second} status=duplicate" in terminal_log(sim)

    journal = sim.journal()
    try:
        until(lambda: journal.values("release:") == {}, 30, "the release acknowledged")
        assert journal.parked() == [] and journal.unsynced() == []
    finally:
        journal.close()
    sales = {s["sale_id"]: s for s in sim.registry_sales()}
    assert {k: (s["volume_cl"], s["amount_cents"], s["held"]) for k, s in sales.items()
            if s["volume_cl"]} == {first: (1000, cents(1000), False), second: (1200, cents(1200), False)}
    (release,) = [s for s in sales.values() if not s["volume_cl"]]
    assert "unanswered_authorization" in release["flags"] and release["amount_cents"] == 0
    holds, usage, held, conflicts = books.read()
    assert sorted(holds.values()) == ["completed", "completed"]          # both sales' holds used
    assert usage == usage_before + 1000 + 1200 and (held, conflicts) == (0, 0)
