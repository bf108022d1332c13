"""Issue 10's crash windows, whole system: the terminal is SIGKILLed at each one (FORECOURT_CRASH_AT for
a journal write, the DART line simulator for the frames that release the pump), then restarted; every
litre and cent is counted once (journal, registry, acquirer, pump totals) and no hold is left.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from contracts.pump import PumpState
from drivers.pump import dart
from hostsim.scenarios import Run
from hostsim.world import Simulator, card_index
from registry.db import open_database
from registry.models import Authorization
from tests.e2e.crash_kit import StartSim, cents, until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VISA = "visa_dda_online_pin"


def killed(sim: Simulator, timeout: float = 30.0) -> None:
    """Wait for the terminal to have died by SIGKILL; forget the process."""
    proc = sim.terminal
    assert proc is not None
    until(lambda: proc.poll() is not None, timeout, "the terminal killing itself")
    assert proc.poll() == -signal.SIGKILL
    sim.kill_terminal()


def restart(sim: Simulator, run: Run) -> None:
    mark = sim.panel.mark()
    sim.start_terminal()
    run.wait("idle", mark, timeout=30)


def holds(sim: Simulator) -> dict[str, str]:
    """The registry's authorizations: id -> status (open holds litres of a wallet)."""
    engine, sessions = open_database(sim.registry_url)
    try:
        with sessions() as s:
            return {a.id: a.status for a in s.scalars(select(Authorization)).all()}
    finally:
        engine.dispose()


def journaled(sim: Simulator) -> list[object]:
    journal = sim.journal()
    try:
        return list(journal.all_sales())
    finally:
        journal.close()


def advices(sim: Simulator, mti: str) -> list[dict[str, str]]:
    """Advices of one kind (first sends and repeats), one per STAN."""
    got = {a["11"]: a for a in sim.acquirer.advices if a["t"][:3] == mti[:3]}
    return list(got.values())


def host_books(sim: Simulator) -> tuple[list[int], list[int]]:
    """The acquirer's books: amounts settled and amounts released, one each per approval, none left."""
    host = sim.acquirer
    settled, released = host.settlements, host.releases
    assert not set(settled) & set(released) and set(host.approved) == set(settled) | set(released)
    return [int(v["amount"]) for v in settled.values()], list(released.values())


def authorizations(sim: Simulator) -> int:
    """AUTHORIZE commands pump 1 has taken."""
    return sum(cmd[:1] == bytes((dart.CMD_AUTHORIZE,)) for cmd in sim.pump_line.sent_commands(1))


def fleet_to_pin(run: Run) -> int:
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    return mark


def take_the_grant(run: Run, mark: int) -> None:
    """The driver keeps what was granted: every nozzle, the granted maximum (ENTER on the preset prompt)."""
    run.wait("enter_preset", mark, timeout=30)
    run.sim.panel.press("ENTER")


def bank_to_pin(run: Run) -> int:
    run.ready()
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin("1234")
    return mark


def settled_once(sim: Simulator, run: Run, volume: int) -> object:
    """The one sale, completed and synced with volume; the registry holds it once, no hold is open."""
    (rec,) = journaled(sim)
    rec = run.wait_synced(rec.id)                           # type: ignore[attr-defined]
    assert rec.state == "completed" and rec.recovered and rec.synced
    assert (rec.volume_cl, rec.amount_cents, rec.charged_cents) == (volume, cents(volume), cents(volume))
    reg = sim.registry_sales()
    assert [(s["sale_id"], s["volume_cl"], s["amount_cents"]) for s in reg] == [
        (rec.id, volume, cents(volume))]
    assert not any(s["held"] for s in reg)                 # nothing set apart for an operator
    assert "open" not in holds(sim).values()
    return rec


# -- window 1: the registry approved, "approved" not journaled ----------------------------------------------
@pytest.mark.parametrize("point", ["before:approved", "after:authorizing"],
                         ids=["granted-not-journaled", "journaled-not-asked"])
def test_fleet_hold_granted_then_killed_is_closed_on_restart(start_sim: StartSim, point: str) -> None:
    sim, run = start_sim(point)
    fleet_to_pin(run)
    killed(sim)
    run.remove()
    (rec,) = journaled(sim)
    request = rec.data["registry_request"]                  # type: ignore[attr-defined]
    assert rec.state == "authorizing"                       # type: ignore[attr-defined]
    granted = point == "before:approved"
    assert holds(sim) == ({request: "open"} if granted else {})   # litres held that the journal never saw

    restart(sim, run)
    rec = settled_once(sim, run, 0)                         # a sale of nothing on the request id
    assert sim.registry_sales()[0]["auth_id"] == request
    assert holds(sim) == ({request: "completed"} if granted else {})
    assert not run.authorize_sent(1) and sim.printer.receipts == []


# -- window 2: "pump_authorized" journaled, the release frames not (all) sent --------------------------------
def test_killed_after_pump_authorized_before_any_frame_settles_nothing(start_sim: StartSim) -> None:
    sim, run = start_sim("after:pump_authorized")
    take_the_grant(run, fleet_to_pin(run))
    killed(sim)
    run.remove()
    assert not run.authorize_sent(1)
    restart(sim, run)
    settled_once(sim, run, 0)
    assert not run.authorize_sent(1) and sim.pump_line.pump(1).state is not PumpState.AUTHORIZED


@pytest.mark.parametrize("reaches_pump", [False, True], ids=["authorize-lost", "authorize-taken"])
def test_killed_during_the_release_frames(start_sim: StartSim, reaches_pump: bool) -> None:
    sim, run = start_sim("")
    pump = sim.pump_line.pump(1)
    before = pump.total(1)
    authorize = (dart.CD1, bytes((dart.CMD_AUTHORIZE,)))
    forward = pump.handle

    def handle(frame: dart.Frame) -> bytes | None:       # the line thread's view of pump 1
        if frame.kind == dart.DATA and authorize in frame.transactions and sim.terminal is not None:
            os.kill(sim.terminal.pid, signal.SIGKILL)    # the terminal dies as its AUTHORIZE goes out
            pump.handle = forward                         # type: ignore[method-assign]
            if not reaches_pump:
                return None
        return forward(frame)

    pump.handle = handle                                  # type: ignore[method-assign]
    take_the_grant(run, fleet_to_pin(run))
    killed(sim)
    run.remove()
    assert (pump.state is PumpState.AUTHORIZED) is reaches_pump
    restart(sim, run)
    volume = 0
    if reaches_pump:             # the restarted terminal follows the released pump: the customer fills
        volume = 1000
        run.fill(1, 1, volume)
    settled_once(sim, run, volume)
    assert pump.total(1) == (before[0] + volume, before[1] + cents(volume))
    assert len(sim.printer.wait_receipts(1, 10) if volume else sim.printer.receipts) == (1 if volume else 0)


def test_killed_as_the_reset_before_the_release_goes_out(start_sim: StartSim) -> None:
    """A pump that shows the last filling is RESET first, then authorized: the terminal dies as the RESET
    reaches the pump. The second sale settles with nothing, the first stays as it was."""
    sim, run = start_sim("")
    pump = sim.pump_line.pump(1)
    mark = fleet_to_pin(run)
    run.wait("lift_nozzle", mark)
    run.remove()
    run.fill(1, 1, 500)
    run.wait("thank_you", mark, timeout=30)
    (first,) = journaled(sim)
    run.wait_synced(first.id)                                   # type: ignore[attr-defined]
    before = pump.total(1)
    released = authorizations(sim)
    reset = (dart.CD1, bytes((dart.CMD_RESET,)))
    forward = pump.handle

    def handle(frame: dart.Frame) -> bytes | None:
        if frame.kind == dart.DATA and reset in frame.transactions and sim.terminal is not None:
            os.kill(sim.terminal.pid, signal.SIGKILL)
            pump.handle = forward                               # type: ignore[method-assign]
        return forward(frame)

    pump.handle = handle                                        # type: ignore[method-assign]
    take_the_grant(run, fleet_to_pin(run))
    killed(sim)
    run.remove()
    assert pump.state is PumpState.RESET and authorizations(sim) == released
    restart(sim, run)
    second = next(r for r in journaled(sim) if r.id != first.id)        # type: ignore[attr-defined]
    second = run.wait_synced(second.id)                                 # type: ignore[attr-defined]
    assert (second.state, second.volume_cl, second.recovered) == ("completed", 0, True)
    assert sorted(s["volume_cl"] for s in sim.registry_sales()) == [0, 500]
    assert not any(s["held"] for s in sim.registry_sales()) and "open" not in holds(sim).values()
    assert pump.total(1) == before and authorizations(sim) == released
    assert len(sim.printer.wait_receipts(1, 10)) == 1


# -- window 3: the bank approved and "approved" is journaled, the pump not released --------------------------
@pytest.mark.parametrize(("partial", "in_pause"), [(None, False), (5000, False), (5000, True)],
                         ids=["full", "partial", "partial-killed-in-the-notice-pause"])
def test_bank_approval_killed_before_release_is_reversed_once(start_sim: StartSim, partial: int | None,
                                                              in_pause: bool) -> None:
    sim, run = start_sim("" if in_pause else "after:approved")
    if partial is not None:
        sim.acquirer_rules = lambda req: f"partial:{partial}" if req["t"] == "0100" else "approve"
    mark = bank_to_pin(run)
    if in_pause:                # "approved up to 50.00" is on the screen; the pump is released after it
        run.wait("approved_up_to", mark, timeout=30)
        sim.kill_terminal()
    else:
        killed(sim)
    run.remove()
    (rec,) = journaled(sim)
    assert rec.state == "approved" and advices(sim, "0420") == []      # type: ignore[attr-defined]

    restart(sim, run)
    until(lambda: advices(sim, "0420"), 20, "the reversal")
    rec = run.wait_synced(rec.id)                                      # type: ignore[attr-defined]
    time.sleep(1.0)                                                    # nothing more follows
    (rev,) = advices(sim, "0420")
    assert rev["39"] == "17" and rev["4"] == f"{partial or 15000:012d}"
    assert rev["90"][4:10] == sim.acquirer.requests[0]["11"] and advices(sim, "0220") == []
    assert rec.state == "completed" and rec.recovered and rec.volume_cl == 0
    assert not run.authorize_sent(1) and sim.printer.receipts == []
    assert [s["volume_cl"] for s in sim.registry_sales()] == [0]
    assert host_books(sim) == ([], [partial or 15000])                # the approval released, once


# -- window 4: the 0220 queued, "completed" not journaled, the pump's figures change meanwhile ---------------
def test_bank_completion_queued_then_killed_completes_with_the_advice_figures(start_sim: StartSim) -> None:
    sim, run = start_sim("before:completed")
    mark = bank_to_pin(run)
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    pump = sim.pump_line.pump(1)
    run.fill(1, 1, 800)
    killed(sim)
    (rec,) = journaled(sim)
    assert rec.state == "pump_authorized" and len(advices(sim, "0220")) <= 1   # type: ignore[attr-defined]
    with pump.lock:         # power cycled, then 3 L sold under the attendant's key while the terminal is down
        pump.restart()
        vol, amt = pump.totals[1]
        pump.totals[1] = (vol + 300, amt + cents(300))

    restart(sim, run)
    until(lambda: advices(sim, "0220"), 20, "the completion")
    rec = settled_once(sim, run, 800)
    time.sleep(1.0)
    (done,) = advices(sim, "0220")
    assert done["4"] == f"{cents(800):012d}" and advices(sim, "0420") == []
    assert int(done["63"][4:13]) == 800 * 10                # the litres booked: field 63, millilitres
    assert host_books(sim) == ([cents(800)], [])
    (settled,) = sim.acquirer.settlements.values()
    assert [line.quantity_milli for line in settled["fuel"]] == [800 * 10]
    assert "settled_from_totals" not in rec.flags                      # type: ignore[attr-defined]
    assert len(sim.printer.wait_receipts(1, 10)) == 1
