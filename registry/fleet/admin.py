"""Operator changes to fleet data: customers, accounts, vehicles, drivers, wallets, limits, time windows,
top-ups, corrections and transfers. Each change writes an AuditEntry (who, what, why); nothing commits
here (the caller does). Bad input is a ConfigError naming what is wrong; money the ledger refuses (more
than a wallet has available, wallets of two units) is its LedgerError."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
import zoneinfo
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, ForecourtError
from registry.fleet import ledger, rules
from registry.models import (
    Account,
    AuditEntry,
    Card,
    Customer,
    Driver,
    Limit,
    Movement,
    Product,
    Station,
    StationGroupMember,
    TimeWindow,
    Vehicle,
    Wallet,
)
from registry.purse_models import is_chip_shadow

__all__ = ["KINDS", "MODES", "PERIODS", "SCOPES", "UNITS", "WALLET_UNITS", "FleetError", "account_summary",
           "add_driver", "add_vehicle", "add_wallet", "add_window", "audit", "clear_limit", "clear_windows",
           "correct", "create_account", "create_customer", "get", "need_reason", "set_limit",
           "set_wallet_order", "topup", "transfer"]

KINDS = ("company", "individual")
WALLET_UNITS = ("volume", "money")
MODES = ("prepaid", "postpaid")
SCOPES = ("card", "account")
PERIODS = ("sale", "day", "week", "month", "year", "lifetime")
UNITS = ("money", "volume", "count")
SPEC_SIZE = 500                         # wallets.allowed_products and wallets.stations
KEY_SIZE = 64                           # an operator's top-up reference ("topup:" + it is a movement key)
MAX_AMOUNT = 10**12                     # cents or centilitres: far above any real wallet, inside BIGINT
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_VEHICLE = re.compile(r"[A-Z0-9]{1,16}", re.ASCII)          # keyed in at the pump: letters and digits
_DRIVER = re.compile(r"[0-9]{1,16}", re.ASCII)              # keyed in on the PIN pad: digits

M = TypeVar("M")


class FleetError(ForecourtError):
    """A fleet change the data does not allow (an illegal card status move); the ledger's own refusals
    (funds, units, a closed wallet) are its LedgerError."""


def get(s: Session, model: type[M], ident: object, what: str) -> M:
    """The row `ident` of `model`; ConfigError "unknown <what>" when there is none."""
    row = s.get(model, ident)
    if row is None:
        raise ConfigError(f"unknown {what}", **{what.replace(" ", "_"): ident})
    return row


def need_reason(reason: str) -> str:
    """Top-ups, corrections, transfers and card status changes say why: a non-empty line of text."""
    reason = reason.strip()
    if not reason or not _NAME.fullmatch(reason):
        raise ConfigError("a reason is required: one line of text, at most 200 characters", key="reason")
    return reason


def _text(value: str, key: str, size: int = 200) -> str:
    """One line of 1 to `size` characters (the column's length: PostgreSQL refuses a longer value)."""
    value = value.strip()
    if not _NAME.fullmatch(value) or len(value) > size:
        raise ConfigError(f"{key} must be 1 to {size} characters without control characters", key=key)
    return value


def audit(s: Session, *, actor: str, action: str, subject: str, now: dt.datetime, reason: str = "",
          **detail: Any) -> AuditEntry:
    """Record who did what to which row and why (detail: plain values, never a card number or PIN)."""
    entry = AuditEntry(at=now, actor=_text(actor, "actor")[:64], action=action, subject=subject,
                       reason=reason, detail=json.dumps(detail, sort_keys=True, default=str))
    s.add(entry)
    return entry


def create_customer(s: Session, name: str, *, kind: str = "company", tax_id: str = "", actor: str,
                    now: dt.datetime) -> Customer:
    if kind not in KINDS:
        raise ConfigError(f"customer kind must be {' or '.join(KINDS)}", key="kind")
    tax_id = tax_id.strip()
    if len(tax_id) > 32 or not tax_id.isprintable():
        raise ConfigError("tax id must be at most 32 printable characters", key="tax_id")
    customer = Customer(name=_text(name, "name"), kind=kind, tax_id=tax_id, created_at=now)
    s.add(customer)
    s.flush()
    audit(s, actor=actor, action="customer.create", subject=f"customer:{customer.id}", now=now,
          name=customer.name, kind=kind)
    return customer


def create_account(s: Session, customer_id: int, name: str, *, prompts: str = "", timezone: str = "UTC",
                   actor: str, now: dt.datetime) -> Account:
    get(s, Customer, customer_id, "customer")
    asked = _prompts(prompts)
    _zone(timezone)
    account = Account(name=_text(name, "name"), customer_id=customer_id, prompts=",".join(asked),
                      timezone=timezone, status="active", auth_seq=0)
    s.add(account)
    s.flush()
    audit(s, actor=actor, action="account.create", subject=f"account:{account.id}", now=now,
          customer=customer_id, prompts=account.prompts, timezone=timezone)
    return account


def _prompts(text: str) -> list[str]:
    asked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in asked if p not in rules.PROMPTS]
    if unknown or len(set(asked)) != len(asked):
        raise ConfigError(f"prompts must be a comma list of {', '.join(rules.PROMPTS)} (each once)",
                          key="prompts")
    return [p for p in rules.PROMPTS if p in asked]


def _zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("time zone must be an IANA name such as Europe/Berlin", key="timezone") from exc


def add_vehicle(s: Session, account_id: int, number: str, *, actor: str, now: dt.datetime) -> Vehicle:
    get(s, Account, account_id, "account")
    number = re.sub(r"[\s-]", "", number).upper()     # stored as the pump's keypad gives it: AB12
    if not _VEHICLE.fullmatch(number):
        raise ConfigError("vehicle number must be 1 to 16 letters and digits", key="number")
    if s.scalar(select(Vehicle.id).where(Vehicle.account_id == account_id, Vehicle.number == number)):
        raise ConfigError("the account has this vehicle already", key="number", number=number)
    vehicle = Vehicle(account_id=account_id, number=number)
    s.add(vehicle)
    s.flush()
    audit(s, actor=actor, action="vehicle.add", subject=f"vehicle:{vehicle.id}", now=now,
          account=account_id, number=number)
    return vehicle


def add_driver(s: Session, account_id: int, code: str, *, name: str = "", actor: str,
               now: dt.datetime) -> Driver:
    get(s, Account, account_id, "account")
    code = code.strip()
    if not _DRIVER.fullmatch(code):
        raise ConfigError("driver id must be 1 to 16 digits (keyed in on the PIN pad)", key="code")
    if s.scalar(select(Driver.id).where(Driver.account_id == account_id, Driver.code == code)):
        raise ConfigError("the account has this driver id already", key="code", code=code)
    driver = Driver(account_id=account_id, code=code, name=_text(name, "name") if name.strip() else "")
    s.add(driver)
    s.flush()
    audit(s, actor=actor, action="driver.add", subject=f"driver:{driver.id}", now=now, account=account_id,
          code=code)
    return driver


def product_spec(s: Session, spec: str) -> str:
    """A wallet's allowed_products checked (rules.check_products) with every network product code known
    to the registry; "" any product. Returned without blanks."""
    items = rules.check_products(spec)
    if len(",".join(text for _, text in items)) > SPEC_SIZE:
        raise ConfigError(f"products must be at most {SPEC_SIZE} characters", key="products")
    known = set(s.scalars(select(Product.code)))
    for kind, text in items:
        if kind == "product" and text not in known:
            raise ConfigError("products must be 3-digit codes (019), ranges (001-099) or known product codes",
                              key="products", item=text[:32])
    return ",".join(text for _, text in items)


def station_spec(s: Session, spec: str) -> str:
    """A wallet's stations checked: known station ids and group:NAME of groups that have stations."""
    items = rules.check_stations(spec)
    if len(",".join(items)) > SPEC_SIZE:
        raise ConfigError(f"stations must be at most {SPEC_SIZE} characters", key="stations")
    for item in items:
        if item.startswith("group:"):
            group = item[6:].strip()
            if s.scalar(select(func.count()).where(StationGroupMember.group == group)):
                continue
        elif s.get(Station, item) is not None:
            continue
        raise ConfigError("stations must be known station ids or group:NAME of a known group",
                          key="stations", item=item[:70])
    return ",".join(items)


def add_wallet(s: Session, account_id: int, *, unit: str, mode: str = "prepaid", credit_limit: int = 0,
               products: str = "", stations: str = "", expires_on: dt.date | None = None,
               priority: int | None = None, name: str = "", actor: str, now: dt.datetime) -> Wallet:
    if get(s, Account, account_id, "account").status != "active":
        raise FleetError("the account is closed", account=account_id)
    if unit not in WALLET_UNITS:
        raise ConfigError(f"wallet unit must be {' or '.join(WALLET_UNITS)}", key="unit")
    if mode not in MODES:
        raise ConfigError(f"wallet mode must be {' or '.join(MODES)}", key="mode")
    if not 0 <= credit_limit <= MAX_AMOUNT or (mode == "prepaid" and credit_limit):
        raise ConfigError("credit limit must be 0 or more, and 0 for a prepaid wallet", key="credit_limit")
    if priority is None:
        last = s.scalar(select(func.max(Wallet.priority)).where(Wallet.account_id == account_id))
        priority = 0 if last is None else last + 1
    if not 0 <= priority <= 1_000_000:
        raise ConfigError("priority must be 0 to 1000000 (lower pays first)", key="priority")
    wallet = Wallet(account_id=account_id, name=_text(name, "name", 100) if name.strip() else "", unit=unit,
                    mode=mode, credit_limit=credit_limit, balance=0, priority=priority, status="active",
                    allowed_products=product_spec(s, products), stations=station_spec(s, stations),
                    expires_on=expires_on)
    s.add(wallet)
    s.flush()
    audit(s, actor=actor, action="wallet.add", subject=f"wallet:{wallet.id}", now=now, account=account_id,
          unit=unit, mode=mode, credit_limit=credit_limit, products=wallet.allowed_products,
          stations=wallet.stations, expires_on=expires_on, priority=priority)
    return wallet


def set_wallet_order(s: Session, account_id: int, wallet_ids: Sequence[int], *, actor: str,
                     now: dt.datetime) -> list[Wallet]:
    """The listed wallets pay first, in that order; the account's others follow in their present order."""
    wallets = list(s.scalars(select(Wallet).where(Wallet.account_id == account_id)
                             .order_by(Wallet.priority, Wallet.id)))
    by_id = {w.id: w for w in wallets}
    if not wallet_ids or len(set(wallet_ids)) != len(wallet_ids) or not set(wallet_ids) <= set(by_id):
        raise ConfigError("the order must list wallets of this account, each once", key="wallets",
                          account=account_id)
    ordered = [by_id[i] for i in wallet_ids] + [w for w in wallets if w.id not in wallet_ids]
    for priority, wallet in enumerate(ordered):
        wallet.priority = priority
    audit(s, actor=actor, action="wallet.order", subject=f"account:{account_id}", now=now,
          order=[w.id for w in ordered])
    return ordered


def _scope(s: Session, scope: str, scope_id: int) -> None:
    if scope not in SCOPES:
        raise ConfigError(f"scope must be {' or '.join(SCOPES)}", key="scope")
    get(s, Card if scope == "card" else Account, scope_id, scope)


def set_limit(s: Session, scope: str, scope_id: int, period: str, unit: str, maximum: int, *, actor: str,
              now: dt.datetime, reason: str = "") -> Limit:
    """At most `maximum` (cents, centilitres or sales) per period on a card or an account; replaces the
    limit of the same scope, period and unit."""
    _scope(s, scope, scope_id)
    if period not in PERIODS:
        raise ConfigError(f"period must be one of {', '.join(PERIODS)}", key="period")
    if unit not in UNITS:
        raise ConfigError(f"limit unit must be one of {', '.join(UNITS)}", key="unit")
    if period == "sale" and unit == "count":
        raise ConfigError("a count of sales per sale is always 1: give a period", key="period")
    if not 0 <= maximum <= MAX_AMOUNT:
        raise ConfigError("a limit's maximum must be 0 or more", key="maximum")
    row = s.scalar(select(Limit).where(Limit.scope == scope, Limit.scope_id == scope_id,
                                       Limit.period == period, Limit.unit == unit))
    before = None if row is None else row.maximum
    if row is None:
        row = Limit(scope=scope, scope_id=scope_id, period=period, unit=unit, maximum=maximum)
        s.add(row)
    row.maximum = maximum
    audit(s, actor=actor, action="limit.set", subject=f"{scope}:{scope_id}", now=now, reason=reason.strip(),
          period=period, unit=unit, maximum=maximum, before=before)
    return row


def clear_limit(s: Session, scope: str, scope_id: int, period: str, unit: str, *, actor: str,
                now: dt.datetime, reason: str = "") -> bool:
    """Remove one limit; False when there was none."""
    _scope(s, scope, scope_id)
    done = s.execute(delete(Limit).where(Limit.scope == scope, Limit.scope_id == scope_id,
                                         Limit.period == period, Limit.unit == unit))
    gone: int = done.rowcount       # type: ignore[attr-defined]
    if gone:
        audit(s, actor=actor, action="limit.clear", subject=f"{scope}:{scope_id}", now=now,
              reason=reason.strip(), period=period, unit=unit)
    return bool(gone)


def add_window(s: Session, scope: str, scope_id: int, weekdays: int, start_minute: int, end_minute: int, *,
               actor: str, now: dt.datetime) -> TimeWindow:
    """When the card (or the account's cards) may buy: weekdays bit 0 Monday, minutes [start, end) of the
    day in the account's time zone; start after end runs over midnight from the day it starts (rules)."""
    _scope(s, scope, scope_id)
    if not 1 <= weekdays <= 127:
        raise ConfigError("weekdays must name at least one day (bit 0 Monday .. bit 6 Sunday)",
                          key="weekdays")
    if not (0 <= start_minute < 1440 and 0 <= end_minute <= 1440) or start_minute == end_minute:
        raise ConfigError("a window runs from 00:00..23:59 to another time up to 24:00", key="window")
    window = TimeWindow(scope=scope, scope_id=scope_id, weekdays=weekdays, start_minute=start_minute,
                        end_minute=end_minute)
    s.add(window)
    s.flush()
    audit(s, actor=actor, action="window.add", subject=f"{scope}:{scope_id}", now=now, weekdays=weekdays,
          start_minute=start_minute, end_minute=end_minute)
    return window


def clear_windows(s: Session, scope: str, scope_id: int, *, actor: str, now: dt.datetime) -> int:
    _scope(s, scope, scope_id)
    done = s.execute(delete(TimeWindow).where(TimeWindow.scope == scope, TimeWindow.scope_id == scope_id))
    gone: int = done.rowcount       # type: ignore[attr-defined]
    audit(s, actor=actor, action="window.clear", subject=f"{scope}:{scope_id}", now=now, removed=gone)
    return gone


def _amount(amount: int, *, signed: bool = False) -> int:
    if amount == 0 or abs(amount) > MAX_AMOUNT or (amount < 0 and not signed):
        raise ConfigError("amount must be " + ("non-zero" if signed else "more than 0"), key="amount")
    return amount


def _wallet(s: Session, wallet_id: int) -> Wallet:
    wallet = get(s, Wallet, wallet_id, "wallet")
    ledger.lock_account(s, wallet.account_id)        # first: settlements of the account wait for this
    s.refresh(wallet)
    return wallet


def _booked(s: Session, key: str) -> bool:
    return s.scalar(select(Movement.id).where(Movement.key == key)) is not None


def topup(s: Session, wallet_id: int, amount: int, *, actor: str, reason: str, now: dt.datetime,
          key: str | None = None) -> Movement:
    """Credit a wallet (its unit). With `key` (a payment's reference) the same top-up given twice is one
    movement; the same key with another amount or wallet is a LedgerError."""
    reason, amount = need_reason(reason), _amount(amount)
    if key is not None and (not key.isprintable() or not 0 < len(key) <= KEY_SIZE):
        raise ConfigError(f"a top-up key is 1 to {KEY_SIZE} printable characters", key="key")
    wallet = _wallet(s, wallet_id)
    key = f"topup:{key}" if key else f"topup:{uuid.uuid4()}"
    again = _booked(s, key)
    move = ledger.topup(s, wallet, amount, key=key, at=now, actor=actor, reason=reason)
    if not again:
        audit(s, actor=actor, action="wallet.topup", subject=f"wallet:{wallet_id}", now=now, reason=reason,
              amount=amount, unit=wallet.unit, balance=move.balance_after, movement=move.id)
    return move


def correct(s: Session, wallet_id: int, amount: int, *, actor: str, reason: str,
            now: dt.datetime) -> Movement:
    """A signed correction, a new movement (the ledger is never edited); the ledger refuses one that takes
    the wallet's available amount below zero."""
    reason, amount = need_reason(reason), _amount(amount, signed=True)
    wallet = _wallet(s, wallet_id)
    move = ledger.correct(s, wallet, amount, key=f"correction:{uuid.uuid4()}", at=now, actor=actor,
                          reason=reason)
    audit(s, actor=actor, action="wallet.correct", subject=f"wallet:{wallet_id}", now=now, reason=reason,
          amount=amount, unit=wallet.unit, balance=move.balance_after, movement=move.id)
    return move


def transfer(s: Session, source_id: int, target_id: int, amount: int, *, actor: str, reason: str,
             now: dt.datetime) -> tuple[Movement, Movement]:
    """Move an amount between two wallets of one unit (the ledger checks units and funds)."""
    reason, amount = need_reason(reason), _amount(amount)
    if source_id == target_id:
        raise ConfigError("a transfer needs two different wallets", key="wallets")
    source, target = get(s, Wallet, source_id, "wallet"), get(s, Wallet, target_id, "wallet")
    if is_chip_shadow(s, source_id) or is_chip_shadow(s, target_id):
        raise ConfigError("a chip wallet's value is on the card: it moves only by the card's records and "
                          "the issuer's loads", key="wallets")
    for account_id in sorted({source.account_id, target.account_id}):    # one order: no deadlock
        ledger.lock_account(s, account_id)
    s.refresh(source)
    s.refresh(target)
    out, into = ledger.transfer(s, source, target, amount, key=f"transfer:{uuid.uuid4()}", at=now,
                                actor=actor, reason=reason)
    audit(s, actor=actor, action="wallet.transfer", subject=f"wallet:{source_id}", now=now, reason=reason,
          amount=amount, unit=source.unit, target=target_id, movements=[out.id, into.id])
    return out, into


def account_summary(s: Session, account_id: int, now: dt.datetime) -> Any:
    """The account's wallets and limits with used and remaining: registry.fleet.statements.account_summary
    (a read-only report, kept with the statements)."""
    from registry.fleet.statements import account_summary as summary

    return summary(s, account_id, now)
