"""Fleet rules as pure functions: which wallet pays, which product and station a wallet allows, period keys,
time windows, what is left of the limits, the allowance a pump may be preset to, and odometer plausibility.

No database, no I/O: callers pass views of the rows and the clock. Units: money in cents, volume in
centilitres (cl), unit prices in thousandths of the currency per litre (price_milli).

Decisions where the design is silent:
- Money rounds half up exactly as the pump does (drivers/pump/simulator.amount_for):
  cents = (cl * milli + 500) // 1000. A money bound allows the largest volume whose amount does not exceed
  it, which is where the pump's amount preset stops the flow.
- Weeks are ISO 8601 weeks (Monday first, datetime.isocalendar), keyed by the ISO year: 2027-01-01 is in
  "W2026-53". Periods and windows are counted in the account's time zone (wall clock, DST included).
- A window whose start is after its end spans midnight (22:00-06:00); its weekday bit is the day it starts,
  so Monday 22:00-06:00 allows Tuesday 03:00. start == end is the whole 24 hours from start.
- A wallet is usable through its expires_on day in local time; a wallet with available <= 0 is skipped.
- A count limit leaves maximum - used sales (0: no more sales). A per-sale limit ("sale") is its maximum
  as is; its used is ignored.
- Malformed specs, windows, periods and time zones raise ConfigError (a ValueError).

>>> amount_of(1000, 1659)
1659
>>> allowance(wallet_unit="money", wallet_available=5000, price_milli=1659,
...           remaining=Remaining(None, 4000, None), max_fill_cl=9999)
(3014, 5000)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.errors import ConfigError
from contracts.money import amount_of, volume_of

__all__ = ["CODE3", "MAX_KM_PER_DAY", "PERIODS", "PROMPTS", "LimitView", "Remaining", "WalletView",
           "WindowView", "allowance", "amount_of", "check_products", "check_stations", "in_windows",
           "is_fuel", "is_merchandise", "local_time", "odometer_problem", "parse_prompts", "paying_wallet",
           "period_key", "product_allowed", "remaining", "station_allowed", "volume_of"]

# Conexxus Payment System Product Codes (ANSI X9.104-2; Conexxus is the registration authority:
# https://www.conexxus.org/public-standards, v4.0). The values as a processor carries them:
# globalpayments/java-sdk, src/main/java/com/global/api/network/enums/NtsProductCode.java (commit 93fae2c);
# 042 also confirmed by CHS Payment Solutions (chspaymentsolutions.chsintheknow.com/?p=4291). Only codes
# read there are listed; the rest of the list is left out.
CODE3 = {
    "001": "Regular unleaded",
    "002": "Mid-grade (plus) unleaded",
    "003": "Premium unleaded",
    "019": "Diesel #2",
    "020": "Premium diesel #2",
    "021": "Diesel #1",
    "022": "Compressed natural gas (CNG)",
    "023": "Liquefied petroleum gas (LPG)",
    "024": "Liquefied natural gas (LNG)",
    "026": "E85",
    "042": "Regular unleaded E10",
    "062": "Diesel exhaust fluid (DEF, AdBlue)",
    "099": "Miscellaneous fuel",
    "400": "General merchandise",
}

PROMPTS = ("odometer", "vehicle", "driver_id")
PERIODS = ("sale", "day", "week", "month", "year", "lifetime")
UNITS = ("money", "volume", "count")
MAX_KM_PER_DAY = 2000
_CODE3 = re.compile(r"\d{3}")
_RANGE = re.compile(r"(\d{3})-(\d{3})")
_NUMERIC = re.compile(r"\d+(\s*-\s*\d+)?")       # looks like a code or a range, but not 3-digit ones
_GROUP = re.compile(r"group:([A-Za-z0-9_.-]{1,16})", re.ASCII)     # a products.group name (String(16))


@dataclass(frozen=True)
class WalletView:
    """A wallet as the rules see it; available = balance + credit - open holds, in its unit."""

    id: int
    unit: str                   # volume | money
    available: int
    products: str               # allowed_products spec
    stations: str               # stations spec
    expires_on: dt.date | None  # usable through this local day
    priority: int               # lower pays first; ties by id
    status: str                 # active | closed


@dataclass(frozen=True)
class LimitView:
    """A limit with what is used of it in its current period."""

    scope: str                  # card | account
    period: str                 # one of PERIODS
    unit: str                   # money (cents) | volume (cl) | count (sales)
    maximum: int
    used: int

    def __post_init__(self) -> None:
        if self.period not in PERIODS or self.unit not in UNITS:
            raise ConfigError("unknown limit period or unit", period=self.period, unit=self.unit)


@dataclass(frozen=True)
class WindowView:
    """A weekly time window in the account's zone: weekdays bit0 = Monday; end_minute is exclusive."""

    scope: str                  # card | account
    weekdays: int
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not (0 <= self.weekdays <= 127 and 0 <= self.start_minute < 1440 and 0 <= self.end_minute <= 1440):
            raise ConfigError("time window out of range", weekdays=self.weekdays,
                              start=self.start_minute, end=self.end_minute)


@dataclass(frozen=True)
class Remaining:
    """What the limits still allow; None = unlimited."""

    cents: int | None
    volume_cl: int | None
    sales_left: int | None


def is_fuel(code3: str | None) -> bool:
    """A motor fuel code (001-099).

    >>> is_fuel("019"), is_fuel("400"), is_fuel(None)
    (True, False, False)
    """
    return code3 is not None and _CODE3.fullmatch(code3) is not None and 1 <= int(code3) <= 99


def is_merchandise(code3: str | None) -> bool:
    """A merchandise code (400-599).

    >>> is_merchandise("400"), is_merchandise("062")
    (True, False)
    """
    return code3 is not None and _CODE3.fullmatch(code3) is not None and 400 <= int(code3) <= 599


def _items(spec: str, what: str) -> list[str]:
    """The items of a comma list; "" (or blanks) is no restriction; an empty item is an error."""
    if not spec.strip():
        return []
    items = [item.strip() for item in spec.split(",")]
    if not all(items):
        raise ConfigError(f"empty item in the {what} list", spec=spec)
    return items


def check_products(spec: str) -> list[tuple[str, str]]:
    """Parse an allowed_products spec into ("code" | "range" | "group" | "product", text) items.

    >>> check_products("001-099, 400,adblue, group:shop")
    [('range', '001-099'), ('code', '400'), ('product', 'adblue'), ('group', 'group:shop')]
    """
    parsed = []
    for item in _items(spec, "product"):
        if _GROUP.fullmatch(item):
            parsed.append(("group", item))
        elif item.startswith("group:"):
            raise ConfigError("a product group is group:NAME: 1 to 16 letters, digits, _ . -", item=item[:40])
        elif _CODE3.fullmatch(item):
            parsed.append(("code", item))
        elif (rng := _RANGE.fullmatch(item)) is not None:
            if rng.group(1) > rng.group(2):
                raise ConfigError("product code range runs backwards", item=item)
            parsed.append(("range", item))
        elif _NUMERIC.fullmatch(item):
            raise ConfigError("a product code or range is written with 3 digits: 019, 001-099", item=item)
        else:
            parsed.append(("product", item))
    return parsed


def _read_products(spec: str) -> list[tuple[str, str]]:
    """A stored spec as product_allowed reads it: what check_products would refuse (an item typed before
    the checks, in a database from before fleet accounts) is a product code to match as written, never an
    error at the pump. '' or blanks: any product."""
    parsed = []
    for item in (i.strip() for i in spec.split(",")):
        rng = _RANGE.fullmatch(item)
        if _CODE3.fullmatch(item):
            parsed.append(("code", item))
        elif rng is not None and rng.group(1) <= rng.group(2):
            parsed.append(("range", item))
        elif item:
            parsed.append(("product", item))
    return parsed


def product_allowed(spec: str, product: str, code3: str | None, group: str | None = None) -> bool:
    """Whether a wallet's spec allows a product: its code3 is listed or in a range, its own code is listed,
    or its group (products.group) is listed as group:NAME (purpose-restricted credit, issue 15).

    >>> product_allowed("001-099", "diesel", "019"), product_allowed("001-099", "shop", "400")
    (True, False)
    >>> product_allowed("adblue", "adblue", None), product_allowed("", "shop", None)
    (True, True)
    >>> product_allowed("95,diesel", "diesel", None), product_allowed("95,,", "95", None)
    (True, True)
    """
    items = _read_products(spec)
    if not items:
        return True
    for kind, text in items:
        if kind == "product" and text in ((product, f"group:{group}") if group else (product,)):
            return True
        if code3 is None or _CODE3.fullmatch(code3) is None:
            continue
        if kind == "code" and text == code3:
            return True
        if kind == "range" and text[:3] <= code3 <= text[4:]:
            return True
    return False


def check_stations(spec: str) -> list[str]:
    """Parse a stations spec: station ids and "group:NAME" items.

    >>> check_stations("ST-001, group:north")
    ['ST-001', 'group:north']
    """
    items = _items(spec, "station")
    for item in items:
        if item.startswith("group:") and not item[6:].strip():
            raise ConfigError("a station group needs a name", item=item)
    return items


def station_allowed(spec: str, station: str, groups: Iterable[str]) -> bool:
    """Whether a stations spec allows a station that belongs to the given groups.

    >>> station_allowed("group:north", "ST-007", ["north"]), station_allowed("ST-001", "ST-007", [])
    (True, False)
    """
    items = [item.strip() for item in spec.split(",") if item.strip()]    # as stored, never an error
    if not items:
        return True
    names = set(groups)
    return any(item == station or (item.startswith("group:") and item[6:].strip() in names) for item in items)


def paying_wallet(wallets: Iterable[WalletView], *, product: str, code3: str | None, station: str,
                  groups: Iterable[str], today: dt.date, group: str | None = None) -> WalletView | None:
    """The first wallet by (priority, id) that is active, not expired on the local day, allows the product
    (of product group `group`) and the station, and has something available; None when no wallet can pay."""
    names = tuple(groups)
    for w in sorted(wallets, key=lambda w: (w.priority, w.id)):
        if w.status != "active" or w.available <= 0 or (w.expires_on is not None and today > w.expires_on):
            continue
        if product_allowed(w.products, product, code3, group) and station_allowed(w.stations, station, names):
            return w
    return None


def local_time(utc_naive: dt.datetime, tz: str) -> dt.datetime:
    """A naive UTC datetime (as the database keeps it) as an aware time in an IANA zone.

    >>> local_time(dt.datetime(2026, 3, 29, 1, 30), "Europe/Berlin").isoformat()
    '2026-03-29T03:30:00+02:00'
    """
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("unknown time zone", tz=tz) from exc
    aware = utc_naive.replace(tzinfo=dt.UTC) if utc_naive.tzinfo is None else utc_naive
    return aware.astimezone(zone)


def period_key(period: str, local_dt: dt.datetime) -> str | None:
    """The Usage key of the period a local time falls in; None for "sale" (no running total).

    >>> [period_key(p, dt.datetime(2027, 1, 1, 12)) for p in PERIODS]
    [None, 'D2027-01-01', 'W2026-53', 'M2027-01', 'Y2027', 'L']
    """
    if period == "sale":
        return None
    if period == "day":
        return f"D{local_dt:%Y-%m-%d}"
    if period == "week":
        year, week, _ = local_dt.isocalendar()
        return f"W{year:04d}-{week:02d}"
    if period == "month":
        return f"M{local_dt:%Y-%m}"
    if period == "year":
        return f"Y{local_dt:%Y}"
    if period == "lifetime":
        return "L"
    raise ConfigError("unknown limit period", period=period)


def _window_allows(w: WindowView, weekday: int, minute: int) -> bool:
    def on(day: int) -> bool:
        return bool(w.weekdays >> (day % 7) & 1)
    if w.start_minute < w.end_minute:
        return on(weekday) and w.start_minute <= minute < w.end_minute
    # spans midnight (or the whole day when start == end): the evening part on the start day, the
    # morning part on the day after
    return (on(weekday) and minute >= w.start_minute) or (on(weekday - 1) and minute < w.end_minute)


def in_windows(windows: Iterable[WindowView], local_dt: dt.datetime) -> bool:
    """Whether a local time is allowed: each scope (card, account) that has windows must have one that
    allows it; no windows at all is any time.

    >>> in_windows([WindowView("card", 0b11111, 6 * 60, 20 * 60)], dt.datetime(2026, 12, 5, 10))  # Saturday
    False
    """
    minute = local_dt.hour * 60 + local_dt.minute
    by_scope: dict[str, bool] = {}
    for w in windows:
        allows = _window_allows(w, local_dt.weekday(), minute)
        by_scope[w.scope] = by_scope.get(w.scope, False) or allows
    return all(by_scope.values())


def remaining(limits: Iterable[LimitView]) -> Remaining:
    """The least that any limit still allows, per unit; never negative; None where no limit applies.

    >>> remaining([LimitView("card", "day", "volume", 5000, 1200), LimitView("account", "sale", "volume",
    ...            3000, 9999), LimitView("card", "month", "count", 10, 12)])
    Remaining(cents=None, volume_cl=3000, sales_left=0)
    """
    least: dict[str, int] = {}
    for lim in limits:
        left = max(0, lim.maximum if lim.period == "sale" else lim.maximum - lim.used)
        least[lim.unit] = min(least.get(lim.unit, left), left)
    return Remaining(least.get("money"), least.get("volume"), least.get("count"))


def allowance(*, wallet_unit: str, wallet_available: int, price_milli: int, remaining: Remaining,
              max_fill_cl: int) -> tuple[int, int]:
    """(volume_cl, amount_cents): the most volume within every volume bound (the limits, the pump's
    max_fill_cl, a volume wallet) whose amount is within every money bound (the limits, a money wallet).
    (0, 0) when no sale is left or nothing fits."""
    if wallet_unit not in ("money", "volume"):
        raise ConfigError("unknown wallet unit", unit=wallet_unit)
    if price_milli <= 0:
        raise ConfigError("unit price must be positive", price_milli=price_milli)
    if remaining.sales_left is not None and remaining.sales_left <= 0:
        return 0, 0
    volumes = [max_fill_cl]
    money: list[int] = []
    if wallet_unit == "volume":
        volumes.append(wallet_available)
    else:
        money.append(wallet_available)
    if remaining.volume_cl is not None:
        volumes.append(remaining.volume_cl)
    if remaining.cents is not None:
        money.append(remaining.cents)
    volumes.extend(volume_of(cents, price_milli) for cents in money)
    volume = max(0, min(volumes))
    return volume, amount_of(volume, price_milli)


def odometer_problem(last_km: int | None, last_at: dt.datetime | None, reading: int,
                     now: dt.datetime) -> str | None:
    """Why an odometer reading is refused, or None: below the vehicle's last reading ("odometer_backwards"),
    or more than MAX_KM_PER_DAY per started day since that reading, one day at least
    ("odometer_implausible"). No last reading: anything goes.

    >>> odometer_problem(10_000, dt.datetime(2026, 12, 1, 8), 9_999, dt.datetime(2026, 12, 1, 9))
    'odometer_backwards'
    >>> odometer_problem(10_000, dt.datetime(2026, 12, 1, 8), 14_000, dt.datetime(2026, 12, 2, 9))
    >>> odometer_problem(10_000, dt.datetime(2026, 12, 1, 8), 12_001, dt.datetime(2026, 12, 1, 9))
    'odometer_implausible'
    """
    if last_km is None:
        return None
    if reading < last_km:
        return "odometer_backwards"
    if last_at is None:
        return None
    started_days = max(1, (now - last_at) // dt.timedelta(days=1) + 1)   # day 2 starts 24 h after
    if reading - last_km > MAX_KM_PER_DAY * started_days:
        return "odometer_implausible"
    return None


def parse_prompts(text: str) -> tuple[str, ...]:
    """An account's prompts list as names in PROMPTS order; "" = none; an unknown name is an error.

    >>> parse_prompts("driver_id, odometer"), parse_prompts("")
    (('odometer', 'driver_id'), ())
    """
    names = {item.strip() for item in text.split(",") if item.strip()}
    unknown = names - set(PROMPTS)
    if unknown:
        raise ConfigError("unknown prompt", prompts=",".join(sorted(unknown)))
    return tuple(p for p in PROMPTS if p in names)

