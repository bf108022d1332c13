"""The registry's answers to a terminal's service requests (contracts.service_messages): loyalty lookups and
redemptions, vouchers, attendant sign-in, cash top-ups and a shift's Z report.

Each operation is one function from the request to its result; a refusal is a Refused with a
ServiceReason. A card number or voucher code is opened here from the request it is sealed to, under the
asking device's PIN key, and never leaves this module but as a keyed token. The caller (registry.server)
has checked the topic, the terminal and the response topic, and commits nothing: `answer` commits what an
operation books, or rolls it back on a refusal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psec.pinblock import decipher_pinblock_iso_4
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from contracts import loyalty
from contracts.cards import mask_number
from contracts.errors import ConfigError, ForecourtError
from contracts.panseal import PanSealError, derive_pan_key, pin_pan, unseal_pan
from contracts.service_messages import ServiceReason as R
from registry import attendants, prepaid, vouchers
from registry.fleet.rules import local_time
from registry.keys import RegistryKeys
from registry.loyalty import history, rewards
from registry.loyalty.points import PointsError
from registry.loyalty.settings import load as loyalty_settings
from registry.models import Account, Attendant, Card, Device, LoyaltyMember, Reward, RewardStock, ShiftReport

__all__ = ["Refused", "answer"]

log = logging.getLogger(__name__)


class Refused(ForecourtError):
    """A service request the registry says no to, with the reason the terminal shows."""

    def __init__(self, reason: str, message: str, *, tries_left: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason, self.tries_left = reason, tries_left


@dataclass
class Ask:
    s: Session
    keys: RegistryKeys
    device: Device
    req: Mapping[str, Any]
    now: dt.datetime

    def _pin_key(self) -> bytes:
        try:
            return self.keys.device_key(self.device.pin_key_hex)
        except ConfigError:
            log.error("device PIN key unusable", extra={"alarm": "device_key", "terminal": self.device.id})
            raise Refused(R.UNAVAILABLE, "device key unusable") from None

    def opened(self, field: str) -> str:
        """The card number or code sealed in `field`, opened for this request."""
        try:
            return unseal_pan(derive_pan_key(self._pin_key()), self.req[field],
                              request_id=self.req["request_id"], terminal=self.req["terminal"],
                              station=self.req["station"])
        except PanSealError:
            log.warning("sealed number does not open", extra={"terminal": self.device.id, "field": field})
            raise Refused(R.UNKNOWN_CARD, "sealed number does not open") from None

    def pin(self, number: str) -> str:
        try:
            return decipher_pinblock_iso_4(self._pin_key(), bytes.fromhex(self.req["pin_block"]),
                                           pin_pan(number))
        except (ValueError, ForecourtError):
            raise Refused(R.WRONG_PIN, "PIN block does not open") from None

    def attendant(self) -> str:
        """The attendant the request names: active, and allowed at this station."""
        row = self.s.get(Attendant, self.req["attendant"])
        stations = row.stations.split(",") if row is not None and row.stations else []
        if row is None or row.status != "active" or (stations and self.req["station"] not in stations):
            raise Refused(R.NOT_ALLOWED, "attendant may not act here")
        return row.id


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
    attendant = a.attendant()
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
    balance = rewards.points_wallet(a.s, seen.account_id).balance
    return {"order": order.id, "status": order.status, "balance": balance}


# the voucher module's reasons, as the terminal shows them
_VOUCHER = {"used": R.VOUCHER_USED, "expired": R.VOUCHER_EXPIRED, "too_many_tries": R.TOO_MANY_TRIES,
            "not_sold_here": R.NOT_ALLOWED}


def voucher_redeem(a: Ask) -> dict[str, Any]:
    code = a.opened("code_sealed")
    try:
        # vouchers.redeem commits its own steps (a wrong code counts against the terminal either way)
        got = vouchers.redeem(a.s, a.keys, code, terminal=a.device.id, station=a.req["station"], now=a.now,
                              request=a.req["request_id"])
    except vouchers.VoucherRefused as exc:
        raise Refused(_VOUCHER.get(exc.reason, R.VOUCHER_UNKNOWN), "voucher refused") from None
    return {"voucher": got.voucher_id, "product": got.product, "volume_cl": got.volume_cl}


def voucher_release(a: Ask) -> dict[str, Any]:
    if not vouchers.release(a.s, a.req["voucher"], terminal=a.device.id, now=a.now):
        raise Refused(R.NOT_ALLOWED, "voucher not redeemed by this terminal")
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
    return {"attendant": got.attendant_id, "name": (row.name if row else "")[:40], "role": got.role or ""}


def topup(a: Ask) -> dict[str, Any]:
    attendant = a.attendant()
    number = a.opened("card_sealed")
    card = a.s.scalar(select(Card).where(Card.token == a.keys.token(number)))
    if card is None or card.status != "active" or card.account_id is None:
        raise Refused(R.UNKNOWN_CARD, "card unknown or not active")
    try:
        done = prepaid.topup(a.s, a.req["amount_cents"], key=a.req["request_id"],
                             actor=f"attendant:{attendant}", now=a.now, card_id=card.id,
                             reason="cash at the terminal")
    except (ConfigError, prepaid.PrepaidError):
        raise Refused(R.NOT_ALLOWED, "top-up refused") from None
    attendants.audit_action(a.s, attendant, "topup", f"wallet:{done.paid.wallet_id}",
                            {"amount_cents": a.req["amount_cents"], "terminal": a.device.id,
                             "station": a.req["station"]}, a.now)
    bonus = done.bonus.amount if done.bonus is not None else 0
    return {"masked": mask_number(number), "paid_cents": done.paid.amount, "bonus_cents": bonus,
            "balance_cents": (done.bonus or done.paid).balance_after}


def _utc(when: str) -> dt.datetime:
    return dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")


# actions audited when the registry was asked (a top-up, a reward) or by their own check (a sign-in)
_AUDITED_BEFORE = ("topup", "redeem", "convert", "voucher")


def shift_close(a: Ask) -> dict[str, Any]:
    """A terminal's Z report: kept once per terminal and shift (ShiftReport, totals as sent), and each
    attendant action in it audited (registry.attendants.audit_action) once, when the report is stored."""
    req, terminal = a.req, a.device.id
    if a.s.scalar(select(ShiftReport.id).where(ShiftReport.terminal == terminal,
                                               ShiftReport.shift == req["shift"])) is not None:
        return {"stored": False}
    totals = {k: req[k] for k in ("after_seq", "last_seq", "total", "by_product", "by_payment",
                                  "by_attendant", "topups_cents", "cash_cents")}
    a.s.add(ShiftReport(terminal=terminal, shift=req["shift"], opened_at=_utc(req["opened_at"]),
                        closed_at=_utc(req["closed_at"]), attendant_id=req["attendant"],
                        totals=json.dumps(totals, sort_keys=True), received_at=a.now))
    where = {"terminal": terminal, "station": req["station"], "shift": req["shift"]}
    for act in req["actions"]:
        if (act["action"] not in attendants.ACTIONS or act["action"] in _AUDITED_BEFORE
                or a.s.get(Attendant, act["attendant"]) is None):
            continue
        subject = act["subject"] or f"shift:{terminal}:{req['shift']}"
        attendants.audit_action(a.s, act["attendant"], act["action"], subject, {**where, "at": act["at"]},
                                a.now)
    a.s.flush()
    return {"stored": True}


OPERATIONS: Mapping[str, Callable[[Ask], dict[str, Any]]] = {
    "loyalty_lookup": loyalty_lookup, "loyalty_redeem": loyalty_redeem, "voucher_redeem": voucher_redeem,
    "voucher_release": voucher_release, "attendant_signin": attendant_signin, "topup": topup,
    "shift_close": shift_close,
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
