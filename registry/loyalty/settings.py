"""The loyalty programme's settings: LoyaltySetting rows over defaults, read typed, written validated.

A key with no row has its default. Values are whole numbers in a range each; a bad key or value is a
ConfigError naming it. Nothing commits here (the caller does; registry.loyalty.admin audits the change).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.models import LoyaltySetting

__all__ = ["DEFAULTS", "RANGES", "Settings", "load", "parse", "put"]

DEFAULTS: dict[str, int] = {
    "expiry_months": 24,         # points older than this expire at the monthly close
    "first_use_days": 30,        # the first-use bonus: first earning sale within this many days of issue
    "first_use_pct": 300,        # ... multiplies the points by this percent (triple)
    "tier_window_months": 12,    # tiers are reviewed on the spend of this many months back
    "daily_cap_points": 5000,    # most points one card earns in a day (its account's local day)
    "group_cards": 3,            # cards sharing one loyalty account: the main card and two more
    "attendant_tries": 5,        # wrong attendant PINs in a row before the attendant is locked
}
RANGES: dict[str, tuple[int, int]] = {
    "expiry_months": (1, 240), "first_use_days": (0, 3660), "first_use_pct": (0, 10_000),
    "tier_window_months": (1, 120), "daily_cap_points": (1, 10**9), "group_cards": (1, 20),
    "attendant_tries": (1, 99),
}


@dataclass(frozen=True)
class Settings:
    expiry_months: int = DEFAULTS["expiry_months"]
    first_use_days: int = DEFAULTS["first_use_days"]
    first_use_pct: int = DEFAULTS["first_use_pct"]
    tier_window_months: int = DEFAULTS["tier_window_months"]
    daily_cap_points: int = DEFAULTS["daily_cap_points"]
    group_cards: int = DEFAULTS["group_cards"]
    attendant_tries: int = DEFAULTS["attendant_tries"]


def parse(key: str, value: int | str) -> int:
    """The setting's value as an int in its range; ConfigError for an unknown key or a bad value.

    >>> parse("daily_cap_points", "2500")
    2500
    >>> parse("group_cards", 0)
    Traceback (most recent call last):
        ...
    contracts.errors.ConfigError: group_cards must be a whole number from 1 to 20 (key=group_cards)
    """
    if key not in DEFAULTS:
        raise ConfigError(f"unknown loyalty setting; known: {', '.join(DEFAULTS)}", key=key[:32])
    low, high = RANGES[key]
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ConfigError(f"{key} must be a whole number from {low} to {high}", key=key)
    return int(text)


def load(s: Session) -> Settings:
    """The settings in force: each stored row over its default. A stored value out of range (a row
    written by hand) is a ConfigError, not a silent default."""
    stored = {row.key: row.value for row in s.scalars(select(LoyaltySetting))}
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: parse(k, v) for k, v in stored.items() if k in names})


def put(s: Session, key: str, value: int | str) -> tuple[int, int]:
    """Store a setting; (old value, new value)."""
    new = parse(key, value)
    row = s.get(LoyaltySetting, key)
    old = parse(key, row.value) if row is not None else DEFAULTS[key]
    if row is None:
        s.add(LoyaltySetting(key=key, value=str(new)))
    else:
        row.value = str(new)
    s.flush()
    return old, new
