"""The network's stations, products and pumps (nozzle rows): add and edit, audited.

What is checked here is what a terminal's signed configuration must hold (contracts.signing.CONFIG_BODY):
a value the configuration could not carry is refused now, not when the registry next publishes. Times are
naive UTC (an aware time is converted).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet.admin import audit
from registry.models import Nozzle, Product, Station

__all__ = ["MOST_PRICE_MILLI", "add_nozzle", "add_product", "add_station", "check_price", "edit_nozzle",
           "edit_product", "edit_station", "naive_utc", "nozzle", "nozzles", "product", "products", "station",
           "stations"]

MOST_PRICE_MILLI = 999_999              # contracts.messages: a configuration's price per litre
MOST_PUMP, MOST_NOZZLE = 32, 15
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CODE3 = re.compile(r"[0-9]{3}")
_GROUP = re.compile(r"[a-z][a-z0-9_]{0,15}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}")


def naive_utc(at: dt.datetime) -> dt.datetime:
    """A time as the registry's tables keep it: naive UTC."""
    return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo is not None else at


def _id(value: str, key: str, size: int = 64) -> str:
    value = value.strip()
    if not _ID.fullmatch(value) or len(value) > size:
        raise ConfigError(f"{key} must be 1 to {size} letters, digits, _ . -", key=key)
    return value


def _text(value: str, key: str, size: int = 200) -> str:
    value = value.strip()
    if not _TEXT.fullmatch(value) or len(value) > size:
        raise ConfigError(f"{key} must be 1 to {size} characters without control characters", key=key)
    return value


def _currency(value: str) -> str:
    value = value.strip().upper()
    if not _CURRENCY.fullmatch(value):
        raise ConfigError("currency must be a 3-letter ISO 4217 code such as EUR", key="currency")
    return value


def _zone(value: str) -> str:
    value = value.strip()
    try:
        if not _ZONE.fullmatch(value):
            raise ValueError(value)
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("time zone must be an IANA name such as Europe/Berlin", key="timezone") from exc
    return value


def check_price(price_milli: int) -> int:
    if isinstance(price_milli, bool) or not isinstance(price_milli, int) or not (
            0 < price_milli <= MOST_PRICE_MILLI):
        raise ConfigError(f"price must be 0.001 to {MOST_PRICE_MILLI / 1000:.3f} per litre",
                          key="price_milli")
    return price_milli


# -- stations -----------------------------------------------------------------------------------------------

def stations(s: Session, only: set[str] | None = None) -> list[Station]:
    """Stations by id; only: these ids (None: all)."""
    query = select(Station).order_by(Station.id)
    if only is not None:
        query = query.where(Station.id.in_(sorted(only)))
    return list(s.scalars(query).all())


def station(s: Session, station_id: str) -> Station:
    row = s.get(Station, station_id)
    if row is None:
        raise ConfigError(f"no station {station_id!r}", key="station")
    return row


def add_station(s: Session, station_id: str, name: str, *, currency: str = "EUR", timezone: str = "UTC",
                actor: str, now: dt.datetime) -> Station:
    station_id = _id(station_id, "station")
    if s.get(Station, station_id) is not None:
        raise ConfigError(f"station {station_id} already exists", key="station")
    row = Station(id=station_id, name=_text(name, "name"), currency=_currency(currency),
                  timezone=_zone(timezone))
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="station.create", subject=f"station:{row.id}", now=naive_utc(now),
          name=row.name, currency=row.currency, timezone=row.timezone)
    return row


def edit_station(s: Session, station_id: str, *, name: str, currency: str, timezone: str, actor: str,
                 now: dt.datetime) -> Station:
    row = station(s, station_id)
    before = {"name": row.name, "currency": row.currency, "timezone": row.timezone}
    row.name, row.currency, row.timezone = _text(name, "name"), _currency(currency), _zone(timezone)
    after = {"name": row.name, "currency": row.currency, "timezone": row.timezone}
    if after != before:
        audit(s, actor=actor, action="station.edit", subject=f"station:{row.id}", now=naive_utc(now),
              before=before, **after)
    return row


# -- products -----------------------------------------------------------------------------------------------

def products(s: Session) -> list[Product]:
    return list(s.scalars(select(Product).order_by(Product.code)).all())


def product(s: Session, code: str) -> Product:
    row = s.get(Product, code)
    if row is None:
        raise ConfigError(f"no product {code!r}", key="product")
    return row


def _code3(value: str | None) -> str | None:
    value = (value or "").strip()
    if value and not _CODE3.fullmatch(value):
        raise ConfigError("product code (Conexxus) must be 3 digits, or none", key="code3")
    return value or None


def _group(value: str) -> str:
    value = value.strip()
    if not _GROUP.fullmatch(value):
        raise ConfigError("product group must be 1 to 16 of a-z 0-9 _, starting with a letter", key="group")
    return value


def add_product(s: Session, code: str, name: str, *, code3: str | None = None, group: str = "fuel",
                actor: str, now: dt.datetime) -> Product:
    code = _id(code, "product", 32)
    if s.get(Product, code) is not None:
        raise ConfigError(f"product {code} already exists", key="product")
    row = Product(code=code, name=_text(name, "name", 100), code3=_code3(code3), group=_group(group))
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="product.create", subject=f"product:{row.code}", now=naive_utc(now),
          name=row.name, code3=row.code3, group=row.group)
    return row


def edit_product(s: Session, code: str, *, name: str, code3: str | None, group: str, actor: str,
                 now: dt.datetime) -> Product:
    row = product(s, code)
    before = {"name": row.name, "code3": row.code3, "group": row.group}
    row.name, row.code3, row.group = _text(name, "name", 100), _code3(code3), _group(group)
    after = {"name": row.name, "code3": row.code3, "group": row.group}
    if after != before:
        audit(s, actor=actor, action="product.edit", subject=f"product:{row.code}", now=naive_utc(now),
              before=before, name=row.name, code3=row.code3, group=row.group)
    return row


# -- pumps: a station's nozzles -----------------------------------------------------------------------------

def nozzles(s: Session, station_id: str) -> list[Nozzle]:
    return list(s.scalars(select(Nozzle).where(Nozzle.station_id == station_id)
                          .order_by(Nozzle.pump, Nozzle.nozzle)).all())


def nozzle(s: Session, nozzle_id: int) -> Nozzle:
    row = s.get(Nozzle, nozzle_id)
    if row is None:
        raise ConfigError(f"no nozzle {nozzle_id}", key="nozzle")
    return row


def _place(pump: int, number: int) -> None:
    if not 1 <= pump <= MOST_PUMP:
        raise ConfigError(f"pump must be 1 to {MOST_PUMP}", key="pump")
    if not 1 <= number <= MOST_NOZZLE:
        raise ConfigError(f"nozzle must be 1 to {MOST_NOZZLE}", key="nozzle")


def add_nozzle(s: Session, station_id: str, pump: int, number: int, product_code: str, price_milli: int, *,
               actor: str, now: dt.datetime) -> Nozzle:
    """A nozzle on a pump of the station (a new pump is its first nozzle), selling one product."""
    station(s, station_id)
    _place(pump, number)
    product(s, product_code)
    check_price(price_milli)
    taken = s.scalar(select(Nozzle.id).where(Nozzle.station_id == station_id, Nozzle.pump == pump,
                                             Nozzle.nozzle == number))
    if taken is not None:
        raise ConfigError(f"pump {pump} already has nozzle {number}", key="nozzle")
    row = Nozzle(station_id=station_id, pump=pump, nozzle=number, product_code=product_code,
                 price_milli=price_milli)
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="nozzle.create", subject=f"station:{station_id}", now=naive_utc(now),
          pump=pump, nozzle=number, product=product_code, price_milli=price_milli)
    return row


def edit_nozzle(s: Session, nozzle_id: int, *, product_code: str, price_milli: int, actor: str,
                now: dt.datetime) -> Nozzle:
    """Change what a nozzle sells and at what price, at once (a scheduled change: registry.prices)."""
    row = nozzle(s, nozzle_id)
    product(s, product_code)
    check_price(price_milli)
    before = {"product": row.product_code, "price_milli": row.price_milli}
    row.product_code, row.price_milli = product_code, price_milli
    if before != {"product": product_code, "price_milli": price_milli}:
        audit(s, actor=actor, action="nozzle.edit", subject=f"station:{row.station_id}", now=naive_utc(now),
              pump=row.pump, nozzle=row.nozzle, before=before, product=product_code, price_milli=price_milli)
    return row
