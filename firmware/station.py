"""What the station's configuration (pushed by the registry, cached in the journal) says about pumps:
prices, products, nozzles and the currency."""

from __future__ import annotations

from typing import Any, Protocol

from firmware.receipt import format_money

__all__ = ["StationConfig"]


class _ConfigSource(Protocol):
    @property
    def config(self) -> dict[str, Any] | None: ...


class StationConfig:
    def __init__(self, source: _ConfigSource) -> None:
        self._source = source

    def _prices(self) -> list[dict[str, Any]]:
        return list((self._source.config or {}).get("prices", []))

    def get(self, key: str, default: Any = None) -> Any:
        return (self._source.config or {}).get(key, default)

    @property
    def currency(self) -> str:
        return str(self.get("currency", "EUR"))

    def money(self, cents: int) -> str:
        return format_money(cents, self.currency)

    def nozzles(self, pump: int) -> tuple[int, ...]:
        return tuple(sorted(p["nozzle"] for p in self._prices() if p["pump"] == pump))

    def price(self, pump: int, nozzle: int) -> int | None:
        for p in self._prices():
            if p["pump"] == pump and p["nozzle"] == nozzle:
                return int(p["price_milli"])
        return None

    def product(self, pump: int, nozzle: int) -> tuple[str | None, str]:
        """(product id, product name) of a nozzle; an unpriced nozzle is named by its number."""
        for p in self._prices():
            if p["pump"] == pump and p["nozzle"] == nozzle:
                return p["product"], p["product_name"]
        return None, f"Nozzle {nozzle}"
