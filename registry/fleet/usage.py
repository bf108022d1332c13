"""What a card and an account used per period: Usage rows of settled sales, plus open authorizations.

A limit check reads one Usage row per period (day, ISO week, month, year, lifetime, in the account's time
zone) instead of the period's sales. `record` adds a settled sale to every period of the account and of
the card; call it under the account lock (registry.fleet.ledger.lock_account), which makes its
UPDATE-then-INSERT safe. Nothing here commits: the caller commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet import rules
from registry.models import Account, Authorization, Card, Limit, Usage

__all__ = ["PERIODS", "SCOPES", "UNITS", "limit_views", "record", "used"]

PERIODS = ("day", "week", "month", "year", "lifetime")     # those with a Usage row ("sale" has none)
UNITS = ("money", "volume", "count")
SCOPES = ("card", "account")
OPEN = "open"                                              # Authorization.status while it may still sell


def _keys(tz: str, at_utc: dt.datetime) -> dict[str, str]:
    """Each period's key at `at_utc` (naive UTC) in the time zone `tz`."""
    local = rules.local_time(at_utc, tz)
    keys: dict[str, str] = {}
    for period in PERIODS:
        key = rules.period_key(period, local)
        if key is not None:
            keys[period] = key
    return keys


def _add(s: Session, scope: str, scope_id: int, period_key: str, cents: int, cl: int, count: int) -> None:
    where = (Usage.scope == scope, Usage.scope_id == scope_id, Usage.period_key == period_key)
    done = s.execute(update(Usage).where(*where).values(
        amount_cents=Usage.amount_cents + cents, volume_cl=Usage.volume_cl + cl, count=Usage.count + count)
        .execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) == 0:
        s.execute(insert(Usage).values(scope=scope, scope_id=scope_id, period_key=period_key,
                                       amount_cents=cents, volume_cl=cl, count=count))


def record(s: Session, *, account_id: int, card_id: int | None, tz: str, at_utc: dt.datetime,
           amount_cents: int, volume_cl: int, count: int = 1) -> None:
    """Add a settled sale (its money, volume and `count`, 1 a sale) to the usage of every period it falls
    in, for the account and for the card (None: the account only). A reversal records the opposite."""
    keys = _keys(tz, at_utc)
    scopes = [("account", account_id)] + ([("card", card_id)] if card_id is not None else [])
    for scope, scope_id in scopes:
        for key in keys.values():
            _add(s, scope, scope_id, key, amount_cents, volume_cl, count)


def _follow(s: Session, card_id: int, newer: bool) -> list[int]:
    """The card, then the one that replaced it and so on (newer), or the one it replaced and so on."""
    chain = [card_id]
    while len(chain) < 32:
        step = (select(Card.replaced_by).where(Card.id == chain[-1]) if newer
                else select(Card.id).where(Card.replaced_by == chain[-1]))
        found = s.scalar(step)
        if found is None or found in chain:
            break
        chain.append(found)
    return chain


def card_chain(s: Session, card_id: int) -> list[int]:
    """The card and the cards it replaced, newest first: a reissued card's open authorizations still count
    in its limits (registry.fleet.cards.reissue copied what they had used)."""
    return _follow(s, card_id, newer=False)


def newest_card(s: Session, card_id: int) -> int:
    """The card that replaced this one, and so on: where a sale on an old card's authorization counts."""
    return _follow(s, card_id, newer=True)[-1]


def _open_authorizations(s: Session, scope: str, scope_id: int, now: dt.datetime) -> tuple[int, int, int]:
    """(cents, centilitres, count) that open, unexpired authorizations of the card or account may take."""
    which = (Authorization.card_id.in_(card_chain(s, scope_id)) if scope == "card"
             else Authorization.account_id == scope_id)
    row = s.execute(select(func.coalesce(func.sum(Authorization.allowed_cents), 0),
                           func.coalesce(func.sum(Authorization.allowed_cl), 0), func.count())
                    .where(which, Authorization.status == OPEN, Authorization.expires_at > now)).one()
    return int(row[0]), int(row[1]), int(row[2])


def used(s: Session, scope: str, scope_id: int, tz: str, now: dt.datetime) -> dict[tuple[str, str], int]:
    """Per (period, unit): what the card or account used in the period that holds `now`, with what its
    open authorizations may still take counted in every period ("sale" is 0: a sale starts from nothing)."""
    if scope not in SCOPES:
        raise ConfigError("unknown limit scope", scope=scope)
    keys = _keys(tz, now)
    # columns, not Usage objects: `record` updates rows behind the session's back (an UPDATE statement)
    rows = {row.period_key: row for row in s.execute(
        select(Usage.period_key, Usage.amount_cents, Usage.volume_cl, Usage.count.label("sales"))
        .where(Usage.scope == scope, Usage.scope_id == scope_id, Usage.period_key.in_(list(keys.values()))))}
    cents, cl, count = _open_authorizations(s, scope, scope_id, now)
    found: dict[tuple[str, str], int] = {("sale", unit): 0 for unit in UNITS}
    for period in PERIODS:
        row = rows.get(keys.get(period, ""))
        found[(period, "money")] = cents + (row.amount_cents if row is not None else 0)
        found[(period, "volume")] = cl + (row.volume_cl if row is not None else 0)
        found[(period, "count")] = count + (row.sales if row is not None else 0)
    return found


def limit_views(s: Session, card: Card, account: Account, now: dt.datetime) -> list[rules.LimitView]:
    """Every limit on the card and on its account, with what is used of it at `now`."""
    limits = list(s.scalars(select(Limit).where(
        ((Limit.scope == "card") & (Limit.scope_id == card.id))
        | ((Limit.scope == "account") & (Limit.scope_id == account.id))).order_by(Limit.id)))
    views: list[rules.LimitView] = []
    usage: dict[str, dict[tuple[str, str], int]] = {}
    for limit in limits:
        if limit.scope not in usage:
            scope_id = card.id if limit.scope == "card" else account.id
            usage[limit.scope] = used(s, limit.scope, scope_id, account.timezone, now)
        views.append(rules.LimitView(scope=limit.scope, period=limit.period, unit=limit.unit,
                                     maximum=limit.maximum, used=usage[limit.scope].get(
                                         (limit.period, limit.unit), 0)))
    return views
