"""Scheduled price changes: a product's price at a station from a given time (UTC), applied by the registry.

A change is scheduled for now or later; one for a time already past is refused (a price is never set
backwards: sales made since were priced as they were). Two pending changes of the same product at the same
station for the same time are refused too: the second would silently win or lose. Pending changes of one
product due together (the registry was down) are applied in time order, so the latest holds; every one is
stamped applied. Applying sets the price of every nozzle of that product at the station; the registry's
configuration thread then republishes (signature() changes) and terminals pick the price up.

Applying and cancelling are conditional updates on the pending row: two registry hosts (or a cancel racing
the apply) do each change once, and it is audited once. Times are naive UTC (an aware time is converted).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet.admin import audit
from registry.models import Nozzle, Product, Station
from registry.network import check_price, naive_utc, product, station
from registry.web_models import PriceChange

__all__ = ["MOST_AHEAD", "PriceChange", "apply_due", "cancel", "change", "changes", "pending", "schedule",
           "signature", "status_of"]

MOST_AHEAD = dt.timedelta(days=366)      # further ahead is a typing mistake more likely than a plan


def _pending_clause() -> Any:
    return (PriceChange.applied_at.is_(None)) & (PriceChange.cancelled_at.is_(None))


def status_of(change: PriceChange) -> str:
    """pending, applied or cancelled."""
    if change.applied_at is not None:
        return "applied"
    return "cancelled" if change.cancelled_at is not None else "pending"


def schedule(s: Session, station_id: str, product_code: str, price_milli: int,
             effective_at: dt.datetime | None, *, actor: str, now: dt.datetime) -> PriceChange:
    """A new price for the product's nozzles at the station from effective_at (None: now). Not committed;
    the caller may apply_due() at once for a change effective now."""
    now = naive_utc(now)
    at = now if effective_at is None else naive_utc(effective_at)
    if at < now:
        raise ConfigError("a price change cannot take effect in the past", key="effective_at")
    if at - now > MOST_AHEAD:
        raise ConfigError("a price change can be scheduled at most a year ahead", key="effective_at")
    station(s, station_id)
    product(s, product_code)
    check_price(price_milli)
    sold = s.scalar(select(Nozzle.id).where(Nozzle.station_id == station_id,
                                            Nozzle.product_code == product_code).limit(1))
    if sold is None:
        raise ConfigError(f"station {station_id} has no nozzle of product {product_code}", key="product")
    clash = s.scalar(select(PriceChange.id).where(
        PriceChange.station_id == station_id, PriceChange.product_code == product_code,
        PriceChange.effective_at == at, _pending_clause()).limit(1))
    if clash is not None:
        raise ConfigError(f"a change of {product_code} at {station_id} is already scheduled for that time "
                          f"(#{clash}): cancel it first", key="effective_at")
    row = PriceChange(station_id=station_id, product_code=product_code, price_milli=price_milli,
                      effective_at=at, created_by=actor[:64], created_at=now)
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="price.schedule", subject=f"station:{station_id}", now=now,
          change=row.id, product=product_code, price_milli=price_milli, effective_at=at.isoformat())
    return row


def change(s: Session, change_id: int) -> PriceChange:
    row = s.get(PriceChange, change_id)
    if row is None:
        raise ConfigError(f"no price change {change_id}", key="change")
    return row


def cancel(s: Session, change_id: int, *, actor: str, now: dt.datetime) -> PriceChange:
    """Cancel a pending change (one applied or cancelled already is refused). Not committed."""
    now = naive_utc(now)
    row = change(s, change_id)
    done = s.execute(update(PriceChange).where(PriceChange.id == change_id, _pending_clause())
                     .values(cancelled_at=now).execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) != 1:
        s.refresh(row)
        raise ConfigError(f"price change {change_id} is {status_of(row)}: only a pending one can be "
                          "cancelled", key="change")
    s.refresh(row)
    audit(s, actor=actor, action="price.cancel", subject=f"station:{row.station_id}", now=now,
          change=row.id, product=row.product_code, price_milli=row.price_milli,
          effective_at=row.effective_at.isoformat())
    return row


def apply_due(s: Session, now: dt.datetime, *, actor: str = "registry") -> list[PriceChange]:
    """Apply every pending change due by now, oldest first: the nozzles of its product at its station take
    its price, it is stamped applied and audited. Returns those this call applied. Not committed."""
    now = naive_utc(now)
    due = s.scalars(select(PriceChange).where(PriceChange.effective_at <= now, _pending_clause())
                    .order_by(PriceChange.effective_at, PriceChange.id)).all()
    applied = []
    for row in due:
        taken = s.execute(update(PriceChange).where(PriceChange.id == row.id, _pending_clause())
                          .values(applied_at=now).execution_options(synchronize_session=False))
        if getattr(taken, "rowcount", 0) != 1:
            continue                    # another host applied it, or it was cancelled meanwhile
        s.refresh(row)
        nozzles = s.scalars(select(Nozzle).where(Nozzle.station_id == row.station_id,
                                                 Nozzle.product_code == row.product_code)).all()
        before = sorted({n.price_milli for n in nozzles})
        for n in nozzles:
            n.price_milli = row.price_milli
        audit(s, actor=actor, action="price.apply", subject=f"station:{row.station_id}", now=now,
              change=row.id, product=row.product_code, price_milli=row.price_milli, before=before,
              nozzles=len(nozzles), scheduled_by=row.created_by, effective_at=row.effective_at.isoformat())
        applied.append(row)
    s.flush()
    return applied


def pending(s: Session, stations: set[str] | None = None) -> list[PriceChange]:
    """Pending changes, soonest first; stations: only theirs (None: all)."""
    query = select(PriceChange).where(_pending_clause())
    if stations is not None:
        query = query.where(PriceChange.station_id.in_(sorted(stations)))
    return list(s.scalars(query.order_by(PriceChange.effective_at, PriceChange.id)).all())


def changes(s: Session, stations: set[str] | None = None, *, most: int = 100) -> list[PriceChange]:
    """The newest changes of any status (effective time, newest first); stations as pending()."""
    query = select(PriceChange)
    if stations is not None:
        query = query.where(PriceChange.station_id.in_(sorted(stations)))
    return list(s.scalars(query.order_by(PriceChange.effective_at.desc(), PriceChange.id.desc())
                          .limit(most)).all())


def signature(s: Session) -> tuple[Any, ...]:
    """Changes whenever what a configuration says of stations, products, pumps or prices may change: the
    registry's publish loop republishes on it, as on the stop-list's."""
    return tuple(tuple(tuple(r) for r in s.execute(select(*table.columns)
                                                   .order_by(*table.columns)).all())
                 for table in (Station.__table__, Product.__table__, Nozzle.__table__))
