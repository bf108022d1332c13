"""The security review of issue 18, registry side: each finding as the attack it was, now refused, on a real
SQLite registry (test_purse_ingest.World: one account, a card's purse with chip wallets 0 and 1, SAM
5341000000000001 active at terminal T-0001)."""

from __future__ import annotations

import struct

import test_purse_ingest
from sqlalchemy import select
from test_purse_ingest import NOW, SAM, START, World

from contracts.purse_keys import AdminOp
from contracts.purse_records import Kind
from registry.purse.purses import purse_by_id, register_sam
from registry.purse.refunds import Refund, refunds_for
from registry.purse.scripts import record_advice, scripts_for
from registry.purse_models import PurseScript

sm, world = test_purse_ingest.sm, test_purse_ingest.world      # fixtures: a fresh SQLite registry

SAM2 = bytes.fromhex("5341000000000002")                       # active at T-0002


def second_terminal(w: World) -> None:
    with w.sm() as s:
        register_sam(s, SAM2, "T-0002", now=NOW)
        s.commit()


def advise(w: World, counter: int, amount: int, terminal: str = "T-0001") -> PurseScript | None:
    with w.sm() as s:
        row = record_advice(s, w.purse_id, counter, amount, terminal=terminal, now=NOW)
        s.commit()
        return row


def refunds(w: World, counter: int) -> list[Refund]:
    with w.sm() as s:
        got = refunds_for(s, w.issuer, w.purse_id, counter, now=NOW)
        s.commit()
    return got


def rows(w: World) -> list[tuple[str, int | None, str | None, str]]:
    with w.sm() as s:
        purse = purse_by_id(s, w.purse_id)
        assert purse is not None
        return [(r.op, r.pending_counter, r.sam_id, r.status) for r in s.scalars(
            select(PurseScript).where(PurseScript.purse_id == purse.id).order_by(PurseScript.id))]


# -- 1. free fuel by a foreign advice --------------------------------------------------------------------

def test_an_advice_from_a_terminal_without_an_active_sam_is_refused_and_flagged(world: World) -> None:
    assert advise(world, 1, 0, terminal="T-0666") is None
    assert rows(world) == [] and world.flag_names() == ["foreign_advice"]


def test_the_completion_names_the_advising_sam(world: World) -> None:
    advise(world, 4, 1500)
    with world.sm() as s:
        [script] = scripts_for(s, world.issuer, world.purse_id, 5, now=NOW)
        s.commit()
    assert script.op is AdminOp.COMPLETE_PENDING
    assert script.message[-16:] == struct.pack(">II8s", 4, 1500, SAM)


def test_a_foreign_advice_makes_no_refund_and_the_reserving_sams_replaces_it(world: World) -> None:
    second_terminal(world)
    assert advise(world, 1, 0, terminal="T-0002") is not None        # "the pump delivered nothing"
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))  # reserved at SAM (T-0001): 50.00
    assert refunds(world, 1) == []
    assert world.balance(world.chip0) == START[0] - 5000
    advise(world, 1, 3200)                                           # the reserving terminal's figure
    [refund] = refunds(world, 1)
    assert refund.amount == 1800 and world.balance(world.chip0) == START[0] - 3200
    assert [(op, sam) for op, _, sam, _ in rows(world)] == [
        ("advice", SAM2.hex()), ("complete_pending", SAM.hex()), ("refund", None)]
    world.sound()


def test_a_later_foreign_advice_is_kept_aside_and_changes_nothing(world: World) -> None:
    second_terminal(world)
    advise(world, 1, 3200)
    held = advise(world, 1, 0, terminal="T-0002")
    assert held is not None and (held.op, held.status) == ("advice", "held")
    assert "advice_conflict" in world.flag_names()
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))
    [refund] = refunds(world, 1)
    assert refund.amount == 1800
    assert advise(world, 1, 0, terminal="T-0002") is not None        # again: the same row, nothing new
    assert len(rows(world)) == 3
    world.sound()
