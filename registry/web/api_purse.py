"""Chip wallets in the back office (/api/purse/...; issue 18, docs/chip-wallets.md): a card's purse with its
chip wallets, shadow balances, open top-up orders, last records and flags; ordering a top-up onto a chip
wallet; an operator's scripts for the chip (reset the PIN tries, a wallet's day and month limits); the
network's purse flags and the terminals' SAMs.

Each endpoint is a function of the context returning a pydantic model; the API routes here and the pages
(registry.web.pages_purse) call the same functions. Operators see every card, a fleet customer their own
(registry.web.scope: another's is 404). A top-up order carrying `key` is made once however often it is sent
(a form's one-time key, as the fleet top-up form): the key is kept in the order's audit entry and looked up
under the account's lock. Scripts and orders reach the chip at its next online contact, never at once.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from sqlalchemy import select

from registry.fleet import admin, ledger
from registry.fleet.cards import FINAL
from registry.fleet_models import AuditEntry, Card, Wallet
from registry.purse import enrol, scripts, topups
from registry.purse_models import (
    ChipPurse,
    ChipWallet,
    PurseFlag,
    PurseLoad,
    PurseRecord,
    PurseSam,
    PurseScript,
)
from registry.web import scope
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput, NotFound
from registry.web.purse_schemas import (
    FlagOut,
    LimitsIn,
    OrderOut,
    PurseOut,
    PurseView,
    ReasonIn,
    RecordOut,
    SamOut,
    ScriptOut,
    TopupIn,
    WalletOut,
)

__all__ = ["CLOSED", "SAM_MOVES", "card_purse", "network_flags", "order_topup", "reset_pin_tries", "router",
           "sam_action", "sam_list", "set_limits"]

router = APIRouter(tags=["purse"])
KINDS = {1: "purchase", 2: "recovered", 3: "load"}
UNITS = {1: "money", 2: "volume"}
SAM_MOVES = {"release": enrol.REPLACED, "revoke": "revoked"}
CLOSED = FINAL | {"expired"}        # a card nothing is loaded onto any more
MAX_AMOUNT = 2**32 - 1
ORDER_ACTION = "purse.topup_order"
SHOWN = 30                          # records and flags on a card's page
FLAGS_SHOWN = 500                   # rows of the network's flag list


def _card(ctx: Ctx, card_id: int) -> Card:
    need(ctx, "operator", "fleet")
    return scope.card_for(ctx, card_id)


def _purse_of(ctx: Ctx, card: Card) -> ChipPurse | None:
    return ctx.s.scalars(select(ChipPurse).where(ChipPurse.card_id == card.id)).one_or_none()


def _purse(ctx: Ctx, card: Card) -> ChipPurse:
    purse = _purse_of(ctx, card)
    if purse is None:
        raise NotFound("purse")
    return purse


def _wallets(ctx: Ctx, purse: ChipPurse) -> list[tuple[ChipWallet, Wallet]]:
    query = (select(ChipWallet, Wallet).join(Wallet, Wallet.id == ChipWallet.wallet_id)
             .where(ChipWallet.purse_id == purse.id).order_by(ChipWallet.number))
    return [(cw, w) for cw, w in ctx.s.execute(query)]


def _orders(ctx: Ctx, purse: ChipPurse, units: dict[int, str]) -> list[OrderOut]:
    query = select(PurseScript).where(PurseScript.purse_id == purse.id, PurseScript.op == "topup",
                                      PurseScript.status == "open").order_by(PurseScript.id)
    rows = list(ctx.s.scalars(query))
    grants: dict[int, set[str]] = {}
    for script_id, status in ctx.s.execute(select(PurseLoad.script_id, PurseLoad.status)
                                           .where(PurseLoad.script_id.in_([r.id for r in rows]))):
        grants.setdefault(script_id or 0, set()).add(status)
    # an order whose load the card confirmed is done (registry.purse.topups closes it at the next contact)
    return [_order_out(r, units, bool(grants.get(r.id, set()) & {"authorized", "in_doubt"}))
            for r in rows if "confirmed" not in grants.get(r.id, set())]


def _order_out(row: PurseScript, units: dict[int, str], loading: bool = False) -> OrderOut:
    wallet, amount = struct.unpack(">BI", bytes.fromhex(row.payload))   # registry.purse.topups' payload
    return OrderOut(id=row.id, wallet=wallet, amount=amount, unit=units.get(wallet, ""), status=row.status,
                    loading=loading, actor=row.actor, requested_at=row.requested_at)


def _script_out(row: PurseScript, units: dict[int, str]) -> ScriptOut:
    out = ScriptOut(id=row.id, op=row.op, status=row.status, actor=row.actor, requested_at=row.requested_at,
                    issued_at=row.issued_at)
    if row.op == "set_limits":
        out.wallet, out.day, out.month = struct.unpack(">BII", bytes.fromhex(row.payload))
        out.unit = units.get(out.wallet or 0, "")
    return out


def _sam_terminals(ctx: Ctx, ids: set[str]) -> dict[str, str]:
    return dict(ctx.s.execute(select(PurseSam.sam_id, PurseSam.terminal)
                              .where(PurseSam.sam_id.in_(ids))).all()) if ids else {}


def _records(ctx: Ctx, purse: ChipPurse) -> list[RecordOut]:
    rows = list(ctx.s.scalars(select(PurseRecord).where(PurseRecord.purse_id == purse.purse_id)
                              .order_by(PurseRecord.id.desc()).limit(SHOWN)))
    names = _sam_terminals(ctx, {r.terminal for r in rows if r.terminal})
    return [RecordOut(id=r.id, kind=KINDS.get(r.kind or 0, "malformed"), counter=r.counter, wallet=r.wallet,
                      amount=r.amount, unit=UNITS.get(r.unit or 0, ""), time=r.time,
                      terminal=names.get(r.terminal or "", r.terminal or ""), sam_id=r.sam_id or "",
                      flags=[f for f in r.flags.split(",") if f], counted=r.counted,
                      received_at=r.received_at)
            for r in rows]


def _flag_out(f: PurseFlag, card: Card | None = None) -> FlagOut:
    return FlagOut(id=f.id, flag=f.flag, detail=f.detail, at=f.at, purse_id=f.purse_id or "",
                   card_id=card.id if card else None, card=card.masked if card else "")


def card_purse(ctx: Ctx, card_id: int) -> PurseView:
    """A card's chip purse: wallets with shadow balances, open orders and scripts, last records, flags."""
    card = _card(ctx, card_id)
    view = PurseView(card_id=card.id, card=card.masked, card_status=card.status, account_id=card.account_id,
                     can_order=card.status not in CLOSED, purse=None)
    purse = _purse_of(ctx, card)
    if purse is None:
        return view
    view.purse = PurseOut(purse_id=purse.purse_id, chip_status=purse.chip_status,
                          last_counter=purse.last_counter, last_record_counter=purse.last_record_counter,
                          last_contact_at=purse.last_contact_at)
    pairs = _wallets(ctx, purse)
    view.wallets = [WalletOut(number=cw.number, wallet_id=w.id, name=w.name, unit=w.unit, balance=w.balance,
                              status=w.status) for cw, w in pairs]
    units = {cw.number: w.unit for cw, w in pairs}
    view.orders = _orders(ctx, purse, units)
    view.scripts = [_script_out(r, units) for r in ctx.s.scalars(select(PurseScript).where(
        PurseScript.purse_id == purse.id, PurseScript.status == "open",
        PurseScript.op.in_(("reset_pin_tries", "set_limits"))).order_by(PurseScript.id))]
    view.records = _records(ctx, purse)
    view.flags = [_flag_out(f) for f in ctx.s.scalars(select(PurseFlag).where(
        PurseFlag.purse_id == purse.purse_id).order_by(PurseFlag.id.desc()).limit(SHOWN))]
    return view


def _chip_wallet(ctx: Ctx, purse: ChipPurse, number: int) -> Wallet:
    found = [w for cw, w in _wallets(ctx, purse) if cw.number == number]
    if not found:
        raise BadInput(ctx.t("purse.no_wallet", wallet=number))
    return found[0]


def _unit_name(ctx: Ctx, unit: str) -> str:
    return ctx.t("purse.unit_volume") if unit == "volume" else ctx.t("purse.unit_money")


def _earlier_order(ctx: Ctx, card: Card, key: str) -> PurseScript | None:
    """The order an earlier submit of the same form made (its key is in the order's audit entry)."""
    entries = ctx.s.scalars(select(AuditEntry).where(AuditEntry.action == ORDER_ACTION,
                                                     AuditEntry.subject == f"card:{card.id}"))
    for entry in entries:
        detail = json.loads(entry.detail or "{}")
        if detail.get("key") == key:
            return ctx.s.get(PurseScript, int(detail["order"]))
    return None


def order_topup(ctx: Ctx, card_id: int, body: TopupIn) -> OrderOut:
    """Order a top-up onto a chip wallet (registry.purse.topups.order_topup): funded from the card's
    account and loaded at the card's next online contact. Once per `key`."""
    card = _card(ctx, card_id)
    purse = _purse(ctx, card)
    if card.status in CLOSED:
        raise BadInput(ctx.t("purse.card_closed", status=ctx.t(f"fleet.status_{card.status}")))
    wallet = _chip_wallet(ctx, purse, body.wallet)
    if body.unit != wallet.unit:
        raise BadInput(ctx.t("purse.wrong_unit", wallet=body.wallet, unit=_unit_name(ctx, wallet.unit)))
    if not 0 < body.amount <= MAX_AMOUNT:
        raise BadInput(ctx.t("purse.bad_amount"))
    key = (body.key or "").strip()
    if key and not key.isprintable():
        raise BadInput(ctx.t("purse.bad_key"))
    if card.account_id is not None:
        ledger.lock_account(ctx.s, card.account_id)     # two submits of one form take turns here
    units = {body.wallet: wallet.unit}
    earlier = _earlier_order(ctx, card, key) if key else None
    if earlier is not None:
        return _order_out(earlier, units)
    row = topups.order_topup(ctx.s, bytes.fromhex(purse.purse_id), body.wallet, body.amount, actor=ctx.actor,
                             now=ctx.now)
    admin.audit(ctx.s, actor=ctx.actor, action=ORDER_ACTION, subject=f"card:{card.id}", now=ctx.now,
                purse=purse.purse_id, wallet=body.wallet, amount=body.amount, unit=wallet.unit, order=row.id,
                key=key)
    ctx.s.commit()
    return _order_out(row, units)


def _operator_purse(ctx: Ctx, card_id: int) -> tuple[Card, ChipPurse]:
    need(ctx, "operator")
    card = _card(ctx, card_id)
    return card, _purse(ctx, card)


def _open_script(ctx: Ctx, purse: ChipPurse, op: str, payload: bytes) -> PurseScript | None:
    return ctx.s.scalars(select(PurseScript).where(
        PurseScript.purse_id == purse.id, PurseScript.op == op, PurseScript.status == "open",
        PurseScript.payload == payload.hex())).first()


def _script(ctx: Ctx, card: Card, purse: ChipPurse, op: str, payload: bytes, reason: str,
            **detail: int) -> ScriptOut:
    """One open script of this op and payload (asked twice while open: the same one)."""
    row = _open_script(ctx, purse, op, payload)
    if row is None:
        row = scripts.request_script(ctx.s, bytes.fromhex(purse.purse_id), op, actor=ctx.actor, now=ctx.now,
                                     payload=payload)
        admin.audit(ctx.s, actor=ctx.actor, action=f"purse.{op}", subject=f"card:{card.id}", now=ctx.now,
                    reason=reason, purse=purse.purse_id, script=row.id, **detail)
        ctx.s.commit()
    return _script_out(row, {cw.number: w.unit for cw, w in _wallets(ctx, purse)})


def reset_pin_tries(ctx: Ctx, card_id: int, body: ReasonIn) -> ScriptOut:
    """Operators: the chip's PIN tries are reset at the card's next online contact."""
    card, purse = _operator_purse(ctx, card_id)
    return _script(ctx, card, purse, "reset_pin_tries", b"", body.reason)


def set_limits(ctx: Ctx, card_id: int, body: LimitsIn) -> ScriptOut:
    """Operators: a chip wallet's own day and month limits, set on the chip at its next online contact."""
    card, purse = _operator_purse(ctx, card_id)
    _chip_wallet(ctx, purse, body.wallet)
    if not (0 <= body.day <= MAX_AMOUNT and 0 <= body.month <= MAX_AMOUNT):
        raise BadInput(ctx.t("purse.bad_limit"))
    payload = scripts.limits_payload(body.wallet, body.day, body.month)
    return _script(ctx, card, purse, "set_limits", payload, body.reason, wallet=body.wallet, day=body.day,
                   month=body.month)


def network_flags(ctx: Ctx, flag: str = "") -> list[FlagOut]:
    """Operators: the purse flags across the network, newest first, with the card (masked)."""
    need(ctx, "operator")
    query = (select(PurseFlag, Card).outerjoin(ChipPurse, ChipPurse.purse_id == PurseFlag.purse_id)
             .outerjoin(Card, Card.id == ChipPurse.card_id).order_by(PurseFlag.id.desc()).limit(FLAGS_SHOWN))
    if flag:
        query = query.where(PurseFlag.flag == flag)
    return [_flag_out(f, c) for f, c in ctx.s.execute(query)]


def _sam_out(row: PurseSam) -> SamOut:
    return SamOut(sam_id=row.sam_id, terminal=row.terminal, status=row.status, key_version=row.key_version,
                  last_seq=row.last_seq, created_at=row.created_at)


def sam_list(ctx: Ctx) -> list[SamOut]:
    need(ctx, "operator")
    return [_sam_out(r) for r in enrol.sams(ctx.s)]


def sam_action(ctx: Ctx, sam_id: str, action: str, body: ReasonIn) -> SamOut:
    """Operators: release a SAM from its terminal (it may be fitted elsewhere) or revoke it."""
    need(ctx, "operator")
    if action not in SAM_MOVES or ctx.s.get(PurseSam, sam_id) is None:
        raise NotFound("SAM")
    row = enrol.set_sam_status(ctx.s, bytes.fromhex(sam_id), SAM_MOVES[action], actor=ctx.actor, now=ctx.now,
                               reason=body.reason)
    ctx.s.commit()
    return _sam_out(row)


Api = Annotated[Ctx, Depends(api_ctx)]
SamId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


@router.get("/api/purse/cards/{card_id}", response_model=PurseView)
def api_card_purse(ctx: Api, card_id: int) -> PurseView:
    return card_purse(ctx, card_id)


@router.post("/api/purse/cards/{card_id}/topups", response_model=OrderOut)
def api_order_topup(ctx: Api, card_id: int, body: TopupIn) -> OrderOut:
    return order_topup(ctx, card_id, body)


@router.post("/api/purse/cards/{card_id}/reset-pin-tries", response_model=ScriptOut)
def api_reset_pin_tries(ctx: Api, card_id: int, body: ReasonIn) -> ScriptOut:
    return reset_pin_tries(ctx, card_id, body)


@router.post("/api/purse/cards/{card_id}/limits", response_model=ScriptOut)
def api_set_limits(ctx: Api, card_id: int, body: LimitsIn) -> ScriptOut:
    return set_limits(ctx, card_id, body)


@router.get("/api/purse/flags", response_model=list[FlagOut])
def api_flags(ctx: Api, flag: str = "") -> list[FlagOut]:
    return network_flags(ctx, flag)


@router.get("/api/purse/sams", response_model=list[SamOut])
def api_sams(ctx: Api) -> list[SamOut]:
    return sam_list(ctx)


@router.post("/api/purse/sams/{sam_id}/{action}", response_model=SamOut)
def api_sam_action(ctx: Api, sam_id: SamId, action: Literal["release", "revoke"], body: ReasonIn) -> SamOut:
    return sam_action(ctx, sam_id, action, body)
