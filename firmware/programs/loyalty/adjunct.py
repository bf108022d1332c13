"""The loyalty card as an adjunct: shown before paying, it rides along the payment that follows (fleet or
bank) and the registry books its points when the sale arrives (SALE loyalty_sealed, registry.loyalty
.earnsale), once by the sale's id.

The card's number stays in memory from the read until the payment's sale begins; the journal only ever
holds it sealed to that sale (bind). Online, the card is looked up (loyalty_lookup) for the "card read"
screen and the receipt's balance; offline it rides along all the same and the receipt says the balance
comes later. The points on the receipt are contracts.loyalty.earn over the programme of the signed
configuration: the registry's figure may be lower (the daily cap per card, which only it can see). The
sale's date (promotions' windows) is the station's, in the time zone the configuration gives ("timezone",
an IANA name), else the terminal's own.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from contracts import loyalty
from contracts.errors import HostUnavailable
from contracts.receipt import WIDTH, ReceiptLine
from firmware.programs.base import CardIn, Figures
from firmware.programs.loyalty.card import LOYALTY_IINS, loyalty_card
from firmware.sale.record import SaleRecord
from ui.catalog import text

__all__ = ["Lookup", "LoyaltyAdjunct", "ServiceAsk"]

log = logging.getLogger(__name__)


class ServiceAsk(Protocol):
    """firmware.service_client.ServiceClient.ask; its answer has ok, reason and result."""

    def __call__(self, op: str, fields: Mapping[str, Any] | None = None, *, card: str | None = None,
                 medium: str = "chip", code: str | None = None) -> Any: ...


class Lookup(Protocol):
    """What the adjunct needs of the terminal's registry link (firmware.hostlink.HostLink)."""

    @property
    def online(self) -> bool: ...
    def seal_for_sale(self, number: str, sale_id: str) -> str: ...


class LoyaltyAdjunct:
    name = "loyalty"

    def __init__(self, host: Lookup, ask: ServiceAsk, *, station: str,
                 programme: Callable[[], loyalty.Programme | None], iins: tuple[str, ...] = LOYALTY_IINS,
                 group: Callable[[str], str] = lambda product: "fuel", language: str = "en",
                 timezone: Callable[[], str | None] = lambda: None) -> None:
        """programme: the one in the signed configuration now (None: none published); group: a product's
        group (the configuration's product_groups; "fuel" without one); language: the receipt's;
        timezone: the station's zone the configuration gives (None: the terminal's)."""
        self.host, self.ask, self.station, self.iins = host, ask, station, iins
        self.programme, self.group, self.language, self.timezone = programme, group, language, timezone

    def sale_time(self, at: float) -> dt.datetime:
        """A moment as the station's wall clock: the configuration's zone, else the terminal's."""
        name = self.timezone()
        if name:
            try:
                return dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(name))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                log.warning("station time zone unknown: the terminal's used", extra={"timezone": name[:64]})
        return dt.datetime.fromtimestamp(at).astimezone()

    # -- the card read -----------------------------------------------------------------------------------
    def claim(self, card: CardIn) -> Mapping[str, Any] | None:
        """The card's document (its number in memory only), or None: not a loyalty card, or one the
        registry says it does not know (the programs then say "card not accepted"). A tag is taken only
        when the registry knows it as a loyalty card (a fleet tag, even one linked to a loyalty account,
        goes on to pay)."""
        got = loyalty_card(card, self.iins)
        if got is None:
            return None
        tag = got.medium == "tag"
        doc: dict[str, Any] = {"number": got.number, "medium": got.medium, "masked": got.masked,
                               "looked_up": False}
        if not self.host.online:
            return None if tag else doc
        try:
            answer = self.ask("loyalty_lookup", card=got.number, medium=got.medium)
        except HostUnavailable as exc:
            log.warning("loyalty lookup failed", extra={"error": str(exc)})
            return None if tag else doc
        if not answer.ok:
            if not tag:
                log.info("loyalty card refused", extra={"reason": answer.reason, "card": got.masked})
            return None if tag or answer.reason in ("unknown_card", "not_allowed") else doc
        result = answer.result
        if tag and result.get("linked") is not False:      # a payment tag (or a registry from before)
            return None
        doc.update(looked_up=True, balance=int(result["balance"]), tier=str(result["tier"]),
                   pooled=bool(result["pooled"]), first_use=bool(result.get("first_use", False)))
        return doc

    def shown(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The "card read" screen's fields: the balance when looked up (a pooled card shows none)."""
        if doc.get("looked_up") and not doc.get("pooled"):
            return {"points": doc["balance"]}
        return {}

    def bind(self, doc: Mapping[str, Any], sale_id: str) -> dict[str, Any]:
        """What the journal keeps for the sale: the number sealed to the sale id, never in clear."""
        kept = {k: v for k, v in doc.items() if k != "number"}
        number = doc.get("number")
        if isinstance(number, str):
            kept["sealed"] = self.host.seal_for_sale(number, sale_id)
        return kept

    def discount(self, doc: Mapping[str, Any], figures: Figures) -> int:
        return 0        # points are earned, not taken off the price

    # -- the receipt -------------------------------------------------------------------------------------
    def earned(self, doc: Mapping[str, Any], sale: SaleRecord) -> int | None:
        """The points this sale earns by the configuration's programme; None: no programme published. A
        sale paid by a voucher earns none (contracts.loyalty.NO_POINTS)."""
        programme = self.programme()
        if programme is None:
            return None
        if sale.program in loyalty.NO_POINTS:
            return 0
        when = self.sale_time(sale.finished_at or sale.created_at)
        product = sale.product or ""
        facts = loyalty.SaleFacts(product, self.group(product), self.station, sale.volume_cl or 0,
                                  sale.amount_cents or 0, when.date())
        return loyalty.earn(programme, facts, tier=str(doc.get("tier", "base")),
                            first_use=bool(doc.get("first_use", False))).points

    def thanks(self, doc: Mapping[str, Any], sale: SaleRecord) -> dict[str, Any]:
        """The "thank you" screen's points earned (none without a programme)."""
        points = self.earned(doc, sale)
        return {} if points is None else {"points": points}

    def receipt(self, doc: Mapping[str, Any], sale: SaleRecord) -> list[ReceiptLine]:
        lang = self.language
        lines = [_pair(text(lang, "receipt.loyalty_card"), str(doc.get("masked", "")))]
        points = self.earned(doc, sale)
        if points is None:
            return [*lines, ReceiptLine(text(lang, "receipt.loyalty_later")[:WIDTH])]
        looked_up = bool(doc.get("looked_up"))
        # offline the tier is not known: the figure is the base one, "about"
        key = "receipt.loyalty_earned" if looked_up else "receipt.loyalty_earned_about"
        lines.append(_pair(text(lang, key), str(points)))
        if doc.get("pooled"):
            lines.append(ReceiptLine(text(lang, "receipt.loyalty_pooled")[:WIDTH]))
        elif looked_up:
            lines.append(_pair(text(lang, "receipt.loyalty_balance"), str(int(doc["balance"]) + points)))
        else:
            lines.append(ReceiptLine(text(lang, "receipt.loyalty_offline")[:WIDTH]))
        return lines


def _pair(left: str, right: str) -> ReceiptLine:
    gap = max(1, WIDTH - len(left) - len(right))
    return ReceiptLine((left + " " * gap + right)[:WIDTH])
