"""Chip wallet pages (/purse/...), rendered over the endpoint functions of registry.web.api_purse: a card's
chip wallets (linked from the card's page of the fleet area and of the fleet customer), ordering a top-up,
the operator's chip scripts, the network's purse flags and the SAMs. After a change the browser goes back
to the page that shows it (303).

Amounts are typed as decimals (12.34 or 12,34) in the chip wallet's unit (money, or litres) and sent on as
hundredths (cents, centilitres); each top-up form carries a one-time key, so a double submit orders once.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.responses import Response

from registry.purse.purses import FLAGS
from registry.web import api_purse as api
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import NotFound
from registry.web.pages_fleet import hundredths
from registry.web.purse_schemas import LimitsIn, ReasonIn, TopupIn
from registry.web.render import page, redirect

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
Page = Annotated[Ctx, Depends(page_ctx)]
Text = Annotated[str, Form()]
DONE = ("topup", "pin", "limits")


def _back(card_id: int, done: str) -> Response:
    return redirect(f"/purse/cards/{card_id}?done={done}")


def _card_link(ctx: Ctx, card_id: int) -> str:
    return f"/fleet/cards/{card_id}" if ctx.user.role == "operator" else f"/customer/cards/{card_id}"


@router.get("/purse/cards/{card_id}")
def card_page(ctx: Page, card_id: int, done: str = "") -> Response:
    view = api.card_purse(ctx, card_id)
    return page(ctx, "purse/card.html", view=view, back=_card_link(ctx, card_id),
                form_key=secrets.token_urlsafe(12), done=done if done in DONE else "")


@router.post("/purse/cards/{card_id}/topup")
def topup(ctx: Page, card_id: int, wallet: Annotated[int, Form()], unit: Text, amount: Text,
          key: Text = "") -> Response:
    api.order_topup(ctx, card_id, TopupIn(wallet=wallet, amount=hundredths(amount), unit=unit,
                                          key=key.strip() or None))
    return _back(card_id, "topup")


@router.post("/purse/cards/{card_id}/pin-tries")
def pin_tries(ctx: Page, card_id: int, reason: Text = "") -> Response:
    api.reset_pin_tries(ctx, card_id, ReasonIn(reason=reason))
    return _back(card_id, "pin")


@router.post("/purse/cards/{card_id}/limits")
def limits(ctx: Page, card_id: int, wallet: Annotated[int, Form()], day: Text = "0", month: Text = "0",
           reason: Text = "") -> Response:
    body = LimitsIn(wallet=wallet, day=hundredths(day or "0", "day limit"),
                        month=hundredths(month or "0", "month limit"), reason=reason)
    api.set_limits(ctx, card_id, body)
    return _back(card_id, "limits")


@router.get("/purse/flags")
def flags_page(ctx: Page, flag: str = "") -> Response:
    if flag and flag not in FLAGS:
        flag = ""
    return page(ctx, "purse/flags.html", flags=api.network_flags(ctx, flag), names=FLAGS, chosen=flag)


@router.get("/purse/sams")
def sams_page(ctx: Page) -> Response:
    return page(ctx, "purse/sams.html", sams=api.sam_list(ctx))


@router.post("/purse/sams/{sam_id}/{action}")
def sam_action(ctx: Page, sam_id: str, action: str, reason: Text = "") -> Response:
    if action not in api.SAM_MOVES or len(sam_id) != 16 or sam_id.strip("0123456789abcdef"):
        raise NotFound("SAM")
    api.sam_action(ctx, sam_id, action, ReasonIn(reason=reason))
    return redirect("/purse/sams")
