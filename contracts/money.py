"""Money and volume at a unit price, as a pump computes them: pure, shared by the terminal and the registry.

Volumes are centilitres, money cents, unit prices thousandths of the currency per litre.
"""

from __future__ import annotations

from contracts.errors import ConfigError

__all__ = ["amount_of", "volume_of"]


def amount_of(volume_cl: int, price_milli: int) -> int:
    """Cents for a volume, rounded half up as the pump rounds.

    >>> amount_of(1, 1659), amount_of(1, 1500), amount_of(1, 1499)
    (2, 2, 1)
    """
    return (volume_cl * price_milli + 500) // 1000


def volume_of(cents: int, price_milli: int) -> int:
    """The most volume whose amount does not exceed the cents (0 when nothing fits): where an amount preset
    stops the pump. Round trip: amount_of(volume_of(c, p), p) <= c < amount_of(volume_of(c, p) + 1, p).

    >>> volume_of(1659, 1659), volume_of(0, 1659), amount_of(volume_of(4999, 1659), 1659)
    (1000, 0, 4999)
    """
    if price_milli <= 0:
        raise ConfigError("unit price must be positive", price_milli=price_milli)
    return max(0, ((cents + 1) * 1000 - 501) // price_milli)
