"""The station's configuration as the terminal uses it: its name, currency, and each nozzle's product
and price. Built once per signed configuration the terminal accepts (firmware.configstore)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware.receipt import format_money

__all__ = ["NozzlePrice", "Station"]


@dataclass(frozen=True)
class NozzlePrice:
    pump: int
    nozzle: int
    product: str
    product_name: str
    price_milli: int       # thousandths of the currency per litre


@dataclass(frozen=True)
class Station:
    name: str
    currency: str = "EUR"
    prices: tuple[NozzlePrice, ...] = ()
    stop_list: frozenset[str] = frozenset()     # card tokens and masked numbers refused at this station
    # (program, most cents, most centilitres) a sale may reach while the registry is away
    offline_limits: tuple[tuple[str, int, int], ...] = ()
    codes3: tuple[tuple[str, int], ...] = ()    # product -> its 3-digit Conexxus code, where it has one

    @classmethod
    def from_config(cls, doc: Mapping[str, Any] | None, station: str) -> Station:
        """From a configuration body (contracts.signing.CONFIG_BODY, checked once its signature held);
        None: nothing known yet.

        >>> s = Station.from_config({"station_name": "Main St", "currency": "EUR", "prices": [
        ...     {"pump": 1, "nozzle": 2, "product": "B7", "product_name": "Diesel", "price_milli": 1659}]},
        ...     "ST-1")
        >>> s.nozzles(1), s.price(1, 2), s.product(1, 2), s.product(1, 3), s.money(3318)
        ((2,), 1659, ('B7', 'Diesel'), (None, 'Nozzle 3'), '33.18 EUR')
        """
        doc = doc or {}
        prices = tuple(NozzlePrice(p["pump"], p["nozzle"], p["product"], p["product_name"], p["price_milli"])
                       for p in doc.get("prices", []))
        limits = tuple(sorted((name, lim["amount_cents"], lim["volume_cl"])
                              for name, lim in doc.get("offline_limits", {}).items()))
        codes3 = tuple(sorted((p, int(c)) for p, c in doc.get("product_codes3", {}).items()))
        return cls(name=str(doc.get("station_name", station)), currency=str(doc.get("currency", "EUR")),
                   prices=prices, stop_list=frozenset(doc.get("stop_list", ())), offline_limits=limits,
                   codes3=codes3)

    def code3(self, product: str) -> int | None:
        """The product's Conexxus code, which chip wallets name (None: the configuration gives none).

        >>> Station("S", codes3=(("diesel", 19),)).code3("diesel"), Station("S").code3("diesel")
        (19, None)
        """
        return dict(self.codes3).get(product)

    def blocked(self, *, token: str = "", masked: str = "") -> bool:
        """Whether a card is on the configuration's stop-list, by its token or its masked number.

        >>> s = Station("S", stop_list=frozenset({"707700******0019"}))
        >>> s.blocked(masked="707700******0019"), s.blocked(token="ab" * 16, masked="707700******0027")
        (True, False)
        """
        return any(card and card in self.stop_list for card in (token, masked))

    def offline_limit(self, program: str) -> tuple[int, int] | None:
        """(most cents, most centilitres) of an offline sale of this program; None: no limit configured."""
        return next(((c, v) for name, c, v in self.offline_limits if name == program), None)

    def money(self, cents: int) -> str:
        return format_money(cents, self.currency)

    def nozzles(self, pump: int) -> tuple[int, ...]:
        return tuple(sorted(p.nozzle for p in self.prices if p.pump == pump))

    def _find(self, pump: int, nozzle: int) -> NozzlePrice | None:
        return next((p for p in self.prices if p.pump == pump and p.nozzle == nozzle), None)

    def price(self, pump: int, nozzle: int) -> int | None:
        p = self._find(pump, nozzle)
        return p.price_milli if p else None

    def product(self, pump: int, nozzle: int) -> tuple[str | None, str]:
        """(product id, product name) of a nozzle; an unpriced nozzle is named by its number."""
        p = self._find(pump, nozzle)
        return (p.product, p.product_name) if p else (None, f"Nozzle {nozzle}")

    def product_prices(self) -> tuple[tuple[str, int], ...]:
        """(product name, unit price) per product, in the order first priced; a product priced differently
        on two pumps shows its lowest price (the idle screen's "from" price).

        >>> Station("S", prices=(NozzlePrice(1, 1, "B7", "Diesel", 1659),
        ...                      NozzlePrice(2, 1, "B7", "Diesel", 1649),
        ...                      NozzlePrice(1, 2, "E10", "Super E10", 1789))).product_prices()
        (('Diesel', 1649), ('Super E10', 1789))
        """
        out: dict[str, tuple[str, int]] = {}
        for p in self.prices:
            known = out.get(p.product)
            if known is None or p.price_milli < known[1]:
                out[p.product] = (p.product_name, p.price_milli)
        return tuple(out.values())

    def price_table(self, pump: int) -> dict[int, int]:
        """Nozzle -> unit price of one pump, as the pump is programmed."""
        return {p.nozzle: p.price_milli for p in self.prices if p.pump == pump}
