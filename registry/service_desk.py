"""The registry's answers to a terminal's service requests (contracts.service_messages): loyalty lookups,
redemptions and conversions, vouchers, attendant sign-in, cash top-ups and a shift's Z report.

Each operation is one function from the request (registry.service_desk_ask.Ask) to its result; a refusal
is a Refused with a ServiceReason. Card numbers and voucher codes are opened from the request they are
sealed to and leave these modules only as keyed tokens. An attendant's request carries the ticket their
online sign-in answered (registry.service_desk_ticket). Top-ups and conversions are in
registry.service_desk_money, the Z report in registry.service_desk_shift. The caller (registry.server) has
checked the topic, the terminal and the response topic, and commits nothing: `answer` commits what an
operation books, or rolls it back on a refusal.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from contracts import loyalty
from contracts.cards import mask_number
from contracts.errors import ConfigError, ForecourtError
from contracts.service_messages import ServiceReason as R
from registry import attendants, vouchers
from registry import service_desk_ticket as tickets
from registry.fleet.rules import local_time
from registry.keys import RegistryKeys
from registry.loyalty import history, points, rewards
from registry.loyalty.points import PointsError
from registry.loyalty.settings import load as loyalty_settings
from registry.models import Account, Attendant, Card, Device, LoyaltyMember, Reward, RewardStock, Station
from registry.purse import desk as purse_desk
from registry.service_desk_ask import Ask, Refused
from registry.service_desk_money import loyalty_convert, topup
from registry.service_desk_shift import shift_close

__all__ = ["OPERATIONS", "Refused", "answer"]

log = logging.getLogger(__name__)


def _history(a: Ask, limit: int) -> tuple[str, history.History]:
    """The masked number of the card in the request and its loyalty account's last movements."""
    number = a.opened("card_sealed")
    try:
        return mask_number(number), history.card_history(a.s, a.keys.token(number), limit=limit)
    except PointsError:
        raise Refused(R.UNKNOWN_CARD, "card earns on no loyalty account") from None


def loyalty_lookup(a: Ask) -> dict[str, Any]:
    masked, seen = _history(a, history.HISTORY_SIZE)
    member = a.s.get(LoyaltyMember, seen.account_id)
    stock = a.s.execute(select(Reward, RewardStock.quantity).outerjoin(
        RewardStock, (RewardStock.reward_id == Reward.id) & (RewardStock.station_id == a.req["station"]))
        .where(Reward.status == "active").order_by(Reward.points, Reward.id).limit(32)).all()
    card = a.s.scalar(select(Card.account_id).where(Card.token == a.keys.token(a.opened("card_sealed"))))
    return {"masked": masked, "balance": seen.balance or 0,
            "tier": member.tier if member is not None else "base", "pooled": seen.pooled,
            "first_use": _first_use(a, member), "linked": card != seen.account_id,
            "history": [{"date": line.date.isoformat(), "time": line.time.isoformat(),
                         "station": line.station, "points": line.points, "kind": line.kind}
                        for line in seen.lines],
            "rewards": [] if seen.pooled else [
                {"reward": r.id, "name": r.name[:100], "points": r.points, "stock": max(0, q or 0)}
                for r, q in stock]}


def _first_use(a: Ask, member: LoyaltyMember | None) -> bool:
    """Whether an earning sale today gets the first-use bonus (registry.loyalty.earnsale's rule)."""
    account = a.s.get(Account, member.account_id) if member is not None else None
    if member is None or account is None or member.first_used_at is not None:
        return False
    days = loyalty.Programme(first_use_days=loyalty_settings(a.s).first_use_days)
    return loyalty.first_use_applies(days, member.issued_on, local_time(a.now, account.timezone).date(),
                                     earned_before=False)


def loyalty_redeem(a: Ask) -> dict[str, Any]:
    attendant = a.attendant(booked=rewards.REDEEM + a.req["request_id"])
    _, seen = _history(a, 1)
    if seen.pooled:
        raise Refused(R.POOLED, "pooled card")
    try:
        order = rewards.redeem(a.s, account=seen.account_id, reward=a.req["reward"], station=a.req["station"],
                               attendant=attendant, handed_over=a.req["handed_over"], key=a.req["request_id"],
                               now=a.now)
    except (rewards.RewardError, ConfigError, PointsError) as exc:     # an unknown reward is a ConfigError
        text = str(exc)
        reason = (R.INSUFFICIENT_POINTS if "not enough" in text else R.OUT_OF_STOCK if "stock" in text
                  else R.NOT_ALLOWED)
        raise Refused(reason, "redemption refused") from None
    balance = points.points_wallet(a.s, seen.account_id).balance
    return {"order": order.id, "status": order.status, "balance": balance}


# the voucher module's reasons, as the terminal shows them
_VOUCHER = {"used": R.VOUCHER_USED, "expired": R.VOUCHER_EXPIRED, "too_many_tries": R.TOO_MANY_TRIES,
            "not_sold_here": R.NOT_ALLOWED}


def _timezone(a: Ask) -> str:
    """The station's wall clock (a voucher's last day is the station's)."""
    station = a.s.get(Station, a.req["station"])
    return station.timezone if station is not None else "UTC"


def voucher_redeem(a: Ask) -> dict[str, Any]:
    code = a.opened("code_sealed")
    try:
        # vouchers.redeem commits its own steps (a wrong code counts against the terminal either way)
        got = vouchers.redeem(a.s, a.keys, code, terminal=a.device.id, station=a.req["station"], now=a.now,
                              request=a.req["request_id"], timezone=_timezone(a))
    except vouchers.VoucherRefused as exc:
        raise Refused(_VOUCHER.get(exc.reason, R.VOUCHER_UNKNOWN), "voucher refused") from None
    return {"voucher": got.voucher_id, "product": got.product, "volume_cl": got.volume_cl}


def voucher_release(a: Ask) -> dict[str, Any]:
    if not vouchers.release(a.s, a.req["voucher"], terminal=a.device.id, now=a.now, request=a.req["request"]):
        raise Refused(R.NOT_ALLOWED, "voucher not redeemed by this terminal and request")
    return {}


def attendant_signin(a: Ask) -> dict[str, Any]:
    number = a.opened("card_sealed")
    got = attendants.verify(a.s, a.keys, card_number=number, pin=a.pin(number), terminal=a.device.id,
                            station=a.req["station"], now=a.now)
    a.s.commit()                  # a wrong try counts even though the answer is no
    if not got.accepted or got.attendant_id is None:
        reason = {"wrong_pin": R.WRONG_PIN, "locked": R.LOCKED}.get(got.reason, R.NOT_ALLOWED)
        raise Refused(reason, "sign-in refused", tries_left=got.tries_left)
    row = a.s.get(Attendant, got.attendant_id)
    return {"attendant": got.attendant_id, "name": (row.name if row else "")[:40], "role": got.role or "",
            "ticket": tickets.issue(a.keys, got.attendant_id, a.device.id, a.now)}


OPERATIONS: Mapping[str, Callable[[Ask], dict[str, Any]]] = {
    "loyalty_lookup": loyalty_lookup, "loyalty_redeem": loyalty_redeem, "voucher_redeem": voucher_redeem,
    "voucher_release": voucher_release, "attendant_signin": attendant_signin, "topup": topup,
    "loyalty_convert": loyalty_convert, "shift_close": shift_close,
    **purse_desk.OPERATIONS,      # the chip purse (registry.purse.desk)
}


def answer(s: Session, keys: RegistryKeys, req: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The SERVICE_RESPONSE to a checked request: the operation's result, committed, or a refusal."""
    base = {"request_id": req["request_id"], "op": req["op"]}
    device = s.get(Device, req["terminal"])
    try:
        if device is None or device.status != "active" or device.station_id != req["station"]:
            raise Refused(R.NOT_ALLOWED, "terminal not active at this station")
        result = OPERATIONS[req["op"]](Ask(s, keys, device, req, now))
        s.commit()
    except Refused as exc:
        s.rollback()
        log.info("service request refused", extra={"op": req["op"], "terminal": req["terminal"],
                                                    "reason": exc.reason})
        extra = {} if exc.tries_left is None else {"tries_left": exc.tries_left}
        return {**base, "ok": False, "reason": exc.reason, "result": {}, **extra}
    except OperationalError:
        s.rollback()
        log.warning("service request not answered: database busy", extra={"op": req["op"]})
        return {**base, "ok": False, "reason": R.UNAVAILABLE, "result": {}}
    except ForecourtError as exc:         # a value the rules refuse: the terminal shows "not allowed"
        s.rollback()
        log.warning("service request refused by a rule", extra={"op": req["op"], "error": type(exc).__name__})
        return {**base, "ok": False, "reason": R.NOT_ALLOWED, "result": {}}
    except Exception:                      # a fault here: answer now rather than leave the terminal waiting
        s.rollback()
        log.exception("service request failed", extra={"op": req["op"]})
        return {**base, "ok": False, "reason": R.UNAVAILABLE, "result": {}}
    return {**base, "ok": True, "reason": "", "result": result}
