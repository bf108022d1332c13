"""Object-level access: what each role may see. An object outside the user's scope is NotFound, exactly
as one that does not exist, so editing an id in a URL or an API call tells nothing.

- operator: everything;
- station (a station manager): the stations in station_ids, their pumps, terminals and sales;
- fleet (a fleet customer's manager): their customer's accounts and cards;
- cardholder: their own account (a loyalty or prepaid account) and its cards.
"""

from __future__ import annotations

from sqlalchemy import select

from registry.fleet_models import Account, Card, Customer
from registry.models import Station
from registry.web.deps import Ctx
from registry.web.errors import NotFound

__all__ = ["account_for", "account_ids", "card_for", "customer_for", "customer_ids", "station_for",
           "station_ids"]


def customer_ids(ctx: Ctx) -> set[int] | None:
    """None: every customer (operators). Station managers and cardholders see no fleet customer."""
    role = ctx.user.role
    if role == "operator":
        return None
    if role == "fleet" and ctx.user.customer_id is not None:
        return {ctx.user.customer_id}
    return set()


def station_ids(ctx: Ctx) -> set[str] | None:
    role = ctx.user.role
    if role == "operator":
        return None
    if role == "station":
        return {x for x in ctx.user.station_ids.split(",") if x}
    return set()


def account_ids(ctx: Ctx) -> set[int] | None:
    """None: every account; a cardholder their one account; a fleet manager their customer's accounts."""
    role = ctx.user.role
    if role == "operator":
        return None
    if role == "cardholder" and ctx.user.account_id is not None:
        return {ctx.user.account_id}
    if role == "fleet" and ctx.user.customer_id is not None:
        return set(ctx.s.scalars(select(Account.id).where(Account.customer_id == ctx.user.customer_id)))
    return set()


def customer_for(ctx: Ctx, customer_id: int) -> Customer:
    allowed = customer_ids(ctx)
    row = ctx.s.get(Customer, customer_id) if allowed is None or customer_id in allowed else None
    if row is None:
        raise NotFound("customer")
    return row


def account_for(ctx: Ctx, account_id: int) -> Account:
    allowed = account_ids(ctx)
    row = ctx.s.get(Account, account_id) if allowed is None or account_id in allowed else None
    if row is None:
        raise NotFound("account")
    return row


def card_for(ctx: Ctx, card_id: int) -> Card:
    row = ctx.s.get(Card, card_id)
    allowed = account_ids(ctx)
    if row is None or (allowed is not None and row.account_id not in allowed):
        raise NotFound("card")
    return row


def station_for(ctx: Ctx, station_id: str) -> Station:
    allowed = station_ids(ctx)
    row = ctx.s.get(Station, station_id) if allowed is None or station_id in allowed else None
    if row is None:
        raise NotFound("station")
    return row
