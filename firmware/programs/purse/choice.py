"""Which chip wallet pays for which product at a pump, and how far: pure functions over what the card said.

A wallet pays for a product when its ranges allow the product's Conexxus code (the configuration's
product_codes3), it has not expired and something is left: the least of its balance and of what the day's
and the month's limits leave (a counter of an earlier day or month counts as nothing used, as on the
card). Of several wallets that could pay for one product the lowest-numbered pays: the issuer orders
wallets by number when it personalizes the card (docs/chip-wallets.md).

>>> from contracts.purse_wallets import Wallet
>>> w = Wallet(number=0, unit=Unit.VOLUME, balance=9000, products=((19, 19),), expiry=20301231,
...            day_limit=6000, day_used=2500, day=20270115)
>>> available(w, 19, day=20270115), available(w, 19, day=20270116), available(w, 1, day=20270115)
(3500, 6000, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.purse_keys import Unit
from contracts.purse_wallets import Wallet
from firmware.sale.record import Preset
from firmware.station import Station

__all__ = ["Option", "allowed_somewhere", "available", "options", "preset"]


def available(wallet: Wallet, code3: int, *, day: int) -> int:
    """What the wallet can pay now for a product, in the wallet's unit; day is YYYYMMDD (UTC, as the card
    counts), its month is day // 100."""
    if not wallet.allows(code3) or wallet.expiry < day:
        return 0
    left = wallet.balance
    if wallet.day_limit:
        left = min(left, max(0, wallet.day_limit - (wallet.day_used if wallet.day == day else 0)))
    if wallet.month_limit:
        used = wallet.month_used if wallet.month == day // 100 else 0
        left = min(left, max(0, wallet.month_limit - used))
    return left


@dataclass(frozen=True)
class Option:
    """One product the card can buy at the pump: its nozzles, and the wallet that pays and how much."""

    product: str
    name: str
    code3: int
    nozzles: tuple[int, ...]
    wallet: Wallet
    limit: int                  # in the wallet's unit


def options(wallets: Sequence[Wallet], station: Station, pump: int, *, day: int) -> list[Option]:
    """The products at this pump some wallet pays for, in nozzle order."""
    by_product: dict[str, list[int]] = {}
    for nozzle in station.nozzles(pump):
        product = station.product(pump, nozzle)[0]
        if product is not None:
            by_product.setdefault(product, []).append(nozzle)
    out = []
    for product, nozzles in by_product.items():
        code3 = station.code3(product)
        if code3 is None:
            continue            # a product without a Conexxus code: no chip wallet can name it
        payers = [(w, available(w, code3, day=day)) for w in sorted(wallets, key=lambda w: w.number)]
        payer = next(((w, left) for w, left in payers if left > 0), None)
        if payer is not None:
            name = station.product(pump, nozzles[0])[1]
            out.append(Option(product, name, code3, tuple(nozzles), payer[0], payer[1]))
    return out


def allowed_somewhere(wallets: Sequence[Wallet], station: Station, pump: int, *, day: int) -> bool:
    """Whether some unexpired wallet allows some product of the pump (nothing left is then a limit or the
    balance, not the product)."""
    codes = {station.code3(station.product(pump, n)[0] or "") for n in station.nozzles(pump)} - {None}
    return any(w.allows(c) and w.expiry >= day for w in wallets for c in codes if c is not None)


def preset(option: Option, *, most_cents: int, most_cl: int) -> Preset:
    """The pump's preset for the option: what its wallet can pay, within the terminal's most for a sale."""
    if option.wallet.unit is Unit.MONEY:
        return Preset.amount(min(option.limit, most_cents))
    return Preset.volume(min(option.limit, most_cl))
