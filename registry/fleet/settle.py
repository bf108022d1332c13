"""Settle a fleet sale as it is stored: debit the wallet that pays its product, count it in the usage of
every period, end its authorization's holds. Runs in the transaction that stores the sale, under the
account's lock; the movement's key (sale:<sale_id>) and the sale's own unique id make it happen once.

An online sale is paid by the wallet its authorization chose for the product. An offline one (flag
"offline", no authorization, its card number sealed to the sale) by the first wallet that may pay for it,
or, when none has enough, by the first that allows the product (or the first wallet): the fuel was taken,
so it is booked even when it overdraws, flagged "overdrawn" and raised as an alarm, never lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.messages import parse_timestamp
from contracts.panseal import PanSealError, derive_pan_key, unseal_pan
from registry.checks import overrun_cl
from registry.fleet import ledger, rules, usage
from registry.fleet.offline_checks import offline_excess
from registry.keys import RegistryKeys
from registry.models import (
    Account,
    AuthAllowance,
    Authorization,
    Card,
    Device,
    Product,
    StationGroupMember,
    Wallet,
)
from registry.purse_models import chip_shadows, is_chip_shadow

__all__ = ["OFFLINE", "Settled", "is_offline", "settle_offline", "settle_online"]

log = logging.getLogger(__name__)

OFFLINE = "offline"       # the flag of a sale the terminal made while the registry was away


@dataclass
class Settled:
    """What settling found: the sale's account and prompts, its card and wallet, flags to add to it, and
    problems that make it held (then nothing is debited)."""
    account_id: int | None = None
    card_id: int | None = None
    wallet_id: int | None = None
    vehicle_id: int | None = None
    driver_id: int | None = None
    odometer_km: int | None = None
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def is_offline(sale: dict[str, Any]) -> bool:
    return bool(sale["auth_id"] is None and OFFLINE in sale["flags"] and "card_sealed" in sale)


def _nothing(sale: dict[str, Any]) -> bool:
    return bool(sale["volume_cl"] == 0 and sale["amount_cents"] == 0)


def settle_online(s: Session, sale: dict[str, Any], auth: Authorization, *, held: bool,
                  now: dt.datetime) -> Settled:
    """A sale on a registry authorization. held: the sale failed a check it cannot be booked past (it is
    kept for an operator, its holds end, nothing is debited)."""
    done = Settled(account_id=auth.account_id, card_id=auth.card_id, vehicle_id=auth.vehicle_id,
                   driver_id=auth.driver_id, odometer_km=auth.odometer_km)
    if auth.account_id is None:                  # an authorization of a registry from before r0007
        ledger.release(s, auth.id)
        return done
    account = ledger.lock_account(s, auth.account_id)
    ledger.release(s, auth.id)                   # held or not, the sale used it: its holds end
    if held or _nothing(sale):
        return done
    s.refresh(auth, ["status"])     # read under the lock: another sale on it may have completed it meanwhile
    if auth.status != "open":
        done.problems.append("authorization_reused")
        return done
    wallet = _online_wallet(s, sale, auth, done)
    if wallet is None:
        return done
    # counted in the periods of when it was authorized .. now: a terminal's clock cannot move it elsewhere
    finished = parse_timestamp(sale["finished_at"])
    at = min(max(finished, auth.created_at), now)
    if finished > auth.expires_at:
        done.flags.append("authorization_expired")     # its room may have gone to another pump meanwhile
    _debit(s, sale, account, wallet, done, now, at)
    return done


def _online_wallet(s: Session, sale: dict[str, Any], auth: Authorization, done: Settled) -> Wallet | None:
    """The wallet the authorization chose for the sale's product. A little beyond that product's allowance
    (a pump running past its preset, a price changed meanwhile) is booked and flagged; far beyond is held."""
    allowance = s.get(AuthAllowance, (auth.id, sale["product"])) if sale["product"] else None
    if allowance is None and auth.wallet_id is not None and s.scalar(
            select(func.count()).select_from(AuthAllowance).where(AuthAllowance.auth_id == auth.id)) == 0:
        wallet_id, most_cl, most_cents = auth.wallet_id, auth.allowed_cl, None   # granted before r0007
    elif allowance is None:
        done.problems.append("product_not_authorized")    # the pump offered only what was allowed
        return None
    else:
        wallet_id, most_cl, most_cents = allowance.wallet_id, allowance.volume_cl, allowance.amount_cents
    if sale["volume_cl"] > most_cl + overrun_cl(most_cl):
        done.problems.append("over_authorized")           # far past the product's preset: held
        return None
    if sale["volume_cl"] > most_cl or (most_cents is not None and sale["amount_cents"] > most_cents):
        done.flags.append("preset_overrun")               # a little past it, or a price changed meanwhile
        log.warning("fleet sale beyond its allowance", extra={"alarm": "fleet_over_allowance",
                                                             "sale_id": sale["sale_id"]})
    wallet = s.get(Wallet, wallet_id)
    if wallet is None or is_chip_shadow(s, wallet.id):     # a chip wallet's shadow: never by a sale
        done.problems.append("wallet_gone")
        return None
    return wallet


def settle_offline(s: Session, keys: RegistryKeys | None, sale: dict[str, Any], device: Device | None,
                   now: dt.datetime, *, held: bool = False) -> Settled:
    """A sale the terminal made offline: find its card from the sealed number and debit its account. held:
    a check failed; the card and account are still named on it, for the operator who books it."""
    done = Settled()
    card = _card(s, keys, sale, device)
    if card is None or card.account_id is None:
        done.problems.append("unknown_card")
        return done
    done.card_id, done.account_id = card.id, card.account_id
    done.vehicle_id, done.driver_id = card.vehicle_id, card.driver_id
    account = ledger.lock_account(s, card.account_id)
    if card.status != "active":
        done.flags.append(f"card_{card.status}")          # refused online, sold offline: reported
    if held or _nothing(sale):
        return done
    wallet = _offline_wallet(s, account, sale, now, done)
    if wallet is None:
        done.problems.append("no_wallet")
        return done
    done.flags += offline_excess(s, card, account, sale, now)
    _debit(s, sale, account, wallet, done, now, min(parse_timestamp(sale["finished_at"]), now))
    return done


def _card(s: Session, keys: RegistryKeys | None, sale: dict[str, Any], device: Device | None) -> Card | None:
    if keys is None or device is None:
        return None
    try:
        number = unseal_pan(derive_pan_key(keys.device_key(device.pin_key_hex)), sale["card_sealed"],
                            request_id=sale["sale_id"], terminal=sale["terminal"], station=sale["station"])
    except (PanSealError, ConfigError):
        return None
    return s.scalar(select(Card).where(Card.token == keys.token(number)))


def _offline_wallet(s: Session, account: Account, sale: dict[str, Any], now: dt.datetime,
                    done: Settled) -> Wallet | None:
    # a chip wallet's shadow is spent on the chip only (issue 18): an offline sale never debits it
    wallets = {w.id: w for w in s.scalars(select(Wallet).where(Wallet.account_id == account.id,
                                                               Wallet.id.not_in(chip_shadows())))}
    product = sale["product"] or ""
    row = s.execute(select(Product.code3, Product.group).where(Product.code == product)).first()
    code3, kind = (row[0], row[1]) if row is not None else (None, None)
    groups = tuple(s.scalars(select(StationGroupMember.group)
                             .where(StationGroupMember.station_id == sale["station"])))
    # the day the sale was made, not the day it arrived: a wallet valid that day pays for it
    today = rules.local_time(parse_timestamp(sale["finished_at"]), account.timezone).date()
    views = [rules.WalletView(w.id, w.unit, ledger.available(s, w, now), w.allowed_products, w.stations,
                              w.expires_on, w.priority, w.status) for w in wallets.values()]
    needed = {w.id: sale["volume_cl"] if w.unit == "volume" else sale["amount_cents"]
              for w in wallets.values()}
    enough = [v for v in views if v.available >= needed[v.id]]
    paying = rules.paying_wallet(enough, product=product, code3=code3, station=sale["station"], groups=groups,
                                 today=today, group=kind)
    if paying is None:     # none has enough: the first that allows the product, else the first wallet
        ordered = sorted(views, key=lambda v: (v.priority, v.id))
        allowing = [v for v in ordered if v.status == "active"
                    and rules.product_allowed(v.products, product, code3, kind)]
        if not allowing:
            done.flags.append("product_not_allowed")      # the terminal could not know offline
        choice = allowing or ordered
        paying = choice[0] if choice else None
    return wallets[paying.id] if paying is not None else None


def _debit(s: Session, sale: dict[str, Any], account: Account, wallet: Wallet, done: Settled,
           now: dt.datetime, at: dt.datetime) -> None:
    """Book the sale on the wallet and count it in the usage of the periods `at` falls in."""
    amount = sale["volume_cl"] if wallet.unit == "volume" else sale["amount_cents"]
    ledger.post(s, wallet, "sale", -amount, key=f"sale:{sale['sale_id']}", at=now, sale_id=sale["sale_id"],
                auth_id=sale["auth_id"], actor="registry", reason=sale["kind"])
    done.wallet_id = wallet.id
    card = usage.newest_card(s, done.card_id) if done.card_id is not None else None   # reissued meanwhile
    usage.record(s, account_id=account.id, card_id=card, tz=account.timezone, at_utc=at,
                 amount_cents=sale["amount_cents"], volume_cl=sale["volume_cl"])
    if wallet.balance + ledger.credit(wallet) < 0:
        done.flags.append("overdrawn")
        log.warning("fleet sale overdraws its wallet", extra={"alarm": "fleet_overdraw", "wallet": wallet.id,
                                                             "sale_id": sale["sale_id"]})
