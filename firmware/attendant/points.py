"""The attendant menu's loyalty items: redeem a reward or convert points into credit on a money card (menu
key 3, then a choice), and a card's last movements (key 4).

Redeeming and converting book in the registry: they need the ticket of an online sign-in (an attendant
signed in offline is told to sign in while online; the registry is not asked) and go through
Desk.booking (the request id journaled first, asked again under it when no answer came). A pooled card's
points are its pool's: it neither redeems nor shows a balance (it says "pooled").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from contracts.screens import Screen
from contracts.service_messages import ServiceReason
from firmware.attendant.paper import movements_slip, slip
from firmware.attendant.signin import Session
from firmware.programs.base import Question
from firmware.receipt import format_money

if TYPE_CHECKING:
    from firmware.attendant.desk import Desk

__all__ = ["CONVERT_POINTS", "PAGE", "convert", "movements", "page_labels", "points_menu", "redeem"]

CONVERT_POINTS = Question("convert_points", max_len=6)     # whole points, 1 to 999999
PAGE = 8        # rewards a page shows when there are more than 9 (the 9th key turns the page)


def paper(desk: Desk) -> dict[str, str]:
    w = desk.runner.world
    return {"station_name": w.station().name, "station": w.station_id, "terminal": w.terminal}


def signed_in_online(desk: Desk, who: Session, done: str) -> bool:
    """An attendant signed in offline has no ticket: told to sign in while online, nothing asked."""
    if who.ticket is None:
        desk.tell(done, ok=False, reason=ServiceReason.NOT_SIGNED_IN)
        return False
    return True


def page_labels(rewards: Sequence[Mapping[str, Any]], page: int) -> list[str]:
    """One page of the rewards' labels (the operator's catalogue name and the points): all of them when
    they fit the 9 digit keys, else PAGE of them and a last label that turns the page ("» 2/3")."""
    labels = [f"{r['name']} {r['points']}" for r in rewards]
    if len(labels) <= 9:
        return labels
    pages = -(-len(labels) // PAGE)
    return [*labels[page * PAGE:(page + 1) * PAGE], f"» {(page + 1) % pages + 1}/{pages}"]


def pick_reward(desk: Desk, rewards: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    page = 0
    while True:
        labels = page_labels(rewards, page)
        i = desk.port.choose(labels)
        if len(rewards) <= 9:
            return rewards[i]
        if i < len(labels) - 1:
            return rewards[page * PAGE + i]
        page = (page + 1) % -(-len(rewards) // PAGE)


def _looked_up(desk: Desk, done: str) -> tuple[Any, Any] | None:
    """The customer's loyalty card and its lookup; None when refused or pooled (told)."""
    card = desk.customer_card()
    look = desk.service.ask("loyalty_lookup", card=card.number, medium=card.medium)
    if not look.ok:
        desk.result(done, look)
        return None
    if look.result["pooled"]:
        desk.tell(done, ok=False, reason=ServiceReason.POOLED)
        return None
    return card, look


def points_menu(desk: Desk, who: Session) -> None:
    """Menu key 3: a reward, or points converted into credit."""
    if not signed_in_online(desk, who, "redeem"):
        return
    if desk.port.menu(Screen.ATTENDANT_MENU, ("redeem_reward", "convert")) == 0:
        redeem(desk, who)
    else:
        convert(desk, who)


def redeem(desk: Desk, who: Session) -> None:
    got = _looked_up(desk, "redeem")
    if got is None:
        return
    card, look = got
    balance = look.result["balance"]
    rewards = [r for r in look.result["rewards"] if r["points"] <= balance and r["stock"] > 0]
    if not rewards:
        desk.tell("redeem", ok=False, reason="insufficient_points", balance=balance)
        return
    reward = pick_reward(desk, rewards)
    handed = desk.port.menu(Screen.ATTENDANT_MENU, ("hand_over", "order")) == 0
    answer = desk.booking("loyalty_redeem", who, {"reward": reward["reward"], "handed_over": handed}, card)
    if not answer.ok:
        desk.result("redeem", answer)
        return
    r = answer.result
    desk.book.record(who.attendant, "redeem", f"order:{r['order']}", reward=reward["reward"],
                     points=reward["points"], status=r["status"])
    desk.print(slip("REWARD", [
        ("Card", look.result["masked"]), ("Reward", str(reward["name"])), ("Points", str(reward["points"])),
        ("Status", r["status"]), ("Order", str(r["order"])), ("Balance", f"{r['balance']} pts"),
        ("Attendant", who.attendant)], at=desk.now(), **paper(desk)))
    desk.result("redeem", answer, balance=r["balance"])


def convert(desk: Desk, who: Session) -> None:
    """Points of the loyalty card presented first turned into credit on the money card presented next
    (the registry's conversion table: loyalty_convert)."""
    got = _looked_up(desk, "convert")
    if got is None:
        return
    card, look = got
    points = int(desk.port.ask(CONVERT_POINTS) or 0)
    if points <= 0:
        desk.tell("convert", ok=False, reason="cancelled")
        return
    if points > look.result["balance"]:
        desk.tell("convert", ok=False, reason="insufficient_points", balance=look.result["balance"])
        return
    target = desk.customer_card()
    if target.number == card.number:          # the loyalty card again: not a money card
        desk.tell("convert", ok=False, reason=ServiceReason.NOT_ALLOWED)
        return
    fields: dict[str, Any] = {"points": points}
    if target.medium != "chip":
        fields["target_medium"] = target.medium
    answer = desk.booking("loyalty_convert", who, fields, card, sealed={"target_sealed": target.number})
    if not answer.ok:
        desk.result("convert", answer)
        return
    r = answer.result
    currency = desk.runner.world.station().currency
    desk.book.record(who.attendant, "convert", f"card:{r['masked']}", points=r["points"],
                     credit_cents=r["credit_cents"])
    desk.print(slip("POINTS TO CREDIT", [
        ("Loyalty card", look.result["masked"]), ("Points", str(r["points"])),
        ("Credit card", r["masked"]), ("Credit", format_money(r["credit_cents"], currency)),
        ("Points balance", f"{r['balance']} pts"), ("Attendant", who.attendant)], at=desk.now(),
        **paper(desk)))
    desk.result("convert", answer, balance=r["balance"], amount_cents=r["credit_cents"], currency=currency)


def movements(desk: Desk, who: Session) -> None:
    card = desk.customer_card()
    look = desk.service.ask("loyalty_lookup", card=card.number, medium=card.medium)
    if not look.ok:
        desk.result("movements", look)
        return
    pooled = bool(look.result["pooled"])
    desk.book.record(who.attendant, "movements", f"card:{look.result['masked']}",
                     shown=len(look.result["history"]))
    desk.print(movements_slip(look.result, at=desk.now(), **paper(desk)))
    if pooled:
        desk.result("movements", look, pooled=True)
    else:
        desk.result("movements", look, balance=look.result["balance"], movements=look.result["history"])
