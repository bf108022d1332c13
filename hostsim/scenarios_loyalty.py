"""Issue 15 scenarios: loyalty points (expiry here), and the table of all nine (prepaid and gift cards in
scenarios_loyalty_cards, the terminal's loyalty and voucher programs in scenarios_loyalty_terminal, the
attendant in scenarios_attendant; what they share in scenarios_loyalty_kit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from hostsim.scenarios_attendant import ATTENDANT_NUMBERS, ATTENDANT_SCENARIOS
from hostsim.scenarios_fleet2 import registry_db
from hostsim.scenarios_loyalty_cards import CARD_SCENARIOS, GIFT_PAN, MIXED_PAN, SHOP_PAN, fuel_sale, issue
from hostsim.scenarios_loyalty_kit import late_sale, ledger, loyalty_account, must, operator, programme
from hostsim.scenarios_loyalty_terminal import TERMINAL_NUMBERS, TERMINAL_SCENARIOS
from registry.models import Movement, PointAllocation, PointAward

__all__ = ["ISSUE15_PROGRAMS", "ISSUE15_SCENARIOS", "ISSUE15_SIM_OPTIONS", "NUMBERS"]

EXPIRY_LOYALTY_PAN, EXPIRY_PAYER_PAN = "7077011000000034", "7077021000000041"


def _months_back(today: dt.date) -> tuple[str, dt.datetime]:
    """The month to close (last month) and a minute before it began (naive UTC): points earned then are
    older than one month at its close. That is under 62 days ago (the oldest sale the registry takes,
    registry.checks.MAX_AGE) but in the last minute of January 31 and August 31."""
    first = today.replace(day=1)
    last_month = (first - dt.timedelta(days=1)).replace(day=1)
    return f"{last_month:%Y-%m}", dt.datetime.combine(last_month, dt.time(0)) - dt.timedelta(minutes=1)


def _awards(sim: Any, wallet: int) -> dict[int, tuple[int, int, dt.datetime]]:
    """The wallet's awards by movement id: (points, remaining, earned_at)."""
    with registry_db(sim) as (s, _):
        return {a.movement_id: (a.points, a.remaining, a.earned_at)
                for a in s.scalars(select(PointAward).where(PointAward.wallet_id == wallet))}


def _expiry(sim: Any, wallet: int, month: str) -> tuple[int | None, list[tuple[int, int]]]:
    """The month's expiry movement (amount) and its allocations (award, points)."""
    with registry_db(sim) as (s, _):
        move = s.scalar(select(Movement).where(Movement.key == f"expiry:{wallet}:{month}"))
        if move is None:
            return None, []
        taken = s.execute(select(PointAllocation.award_id, PointAllocation.points)
                          .where(PointAllocation.spend_id == move.id)).all()
        return move.amount, [(a, p) for a, p in taken]


def loyalty_expiry(run: Any) -> None:
    """20 points earned before last month began (a sale synced late) and 10 today (a linked gift card at
    the pump); with points expiring after 1 month, last month's close expires the 20 oldest only, its
    allocations name that award, and a second close books nothing."""
    run.ready()
    programme(run)
    month, old = _months_back(dt.datetime.now(dt.UTC).date())
    account, wallet = loyalty_account(run, "Expiry Driver", EXPIRY_LOYALTY_PAN,
                                      issued_on=(old - dt.timedelta(days=60)).date())
    issue(run, "gift", EXPIRY_PAYER_PAN, "any", amount="50", key="EXP-TILL1-0001")
    must(run, "loyalty", "account", "link", str(account), "--number", "-", stdin=EXPIRY_PAYER_PAN + "\n",
         keys=True)
    late_sale(run, EXPIRY_LOYALTY_PAN, old, 2000)
    rec, _ = fuel_sale(run, EXPIRY_PAYER_PAN, "LINKED GIFT CARD")
    awards = _awards(run.sim, wallet)
    dates = sorted((earned, points) for points, _, earned in awards.values())
    run.check([p for _, p in dates] == [20, 10], f"20 points earned {old:%Y-%m-%d}, 10 today: {dates}")
    must(run, "loyalty", "setting", "set", "expiry_months", "1")
    try:
        done = operator(run, "loyalty", "close", "--month", month)
        again = operator(run, "loyalty", "close", "--month", month)
    finally:
        must(run, "loyalty", "setting", "set", "expiry_months", "24")
    run.check(done.code == 0 and "20 points expired" in done.out, f"the close expired 20 points: {done.out}")
    run.check(again.code == 0 and "0 points expired" in again.out,
              f"closed again: nothing twice: {again.out}")
    amount, taken = _expiry(run.sim, wallet, month)
    oldest = min(awards, key=lambda m: (awards[m][2], m))
    run.check(amount == -20 and taken == [(oldest, 20)],
              f"the expiry (-20) is allocated to the oldest award {oldest}: {amount} {taken}")
    after = _awards(run.sim, wallet)
    run.check(sorted((p, r) for p, r, _ in after.values()) == [(10, 10), (20, 0)],
              f"the newer award keeps its 10 points: {after}")
    led = ledger(run.sim, wallet)
    run.check(led["balance"] == led["sum"] == sum(r for _, r, _ in after.values()) == 10,
              f"balance = sum of movements = sum of what awards have left: {led}")
    run.check(rec.synced, "today's sale acknowledged")


ISSUE15_SCENARIOS: dict[str, Callable[[Any], None]] = {
    **CARD_SCENARIOS,
    "loyalty-expiry": loyalty_expiry,
    **TERMINAL_SCENARIOS,
    **ATTENDANT_SCENARIOS,
}
# the terminal runs every program of the issue: voucher codes, the loyalty adjunct, the attendant's cash
ISSUE15_PROGRAMS = ("fleet", "voucher", "bank", "cash", "loyalty")
ISSUE15_SIM_OPTIONS = {name: {"programs": ISSUE15_PROGRAMS} for name in ISSUE15_SCENARIOS}

# every card number the scenarios use: none may appear in a transcript, a log line or the JSON
NUMBERS = (GIFT_PAN, SHOP_PAN, MIXED_PAN, EXPIRY_LOYALTY_PAN, EXPIRY_PAYER_PAN, *TERMINAL_NUMBERS,
           *ATTENDANT_NUMBERS)
