"""Who and what an acquirer message is about: the card acceptor, the card, the fuel sold, the original
pre-authorization. Each turns itself into ISO 8583 fields of the acquirer dialect (contracts.iso8583_spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import iso8583_spec as s
from contracts.errors import MessageError
from contracts.iso8583_dialect import Dialect

__all__ = ["Card", "FuelLine", "Original", "Terminal", "parse_fuel"]


@dataclass(frozen=True)
class Terminal:
    """Card acceptor data (fields 18, 32, 41, 42, 43, 49).

    Field 43 [MC43]: name 1-22, space, city 24-36, space, country 38-40 (ISO 3166 alpha-3)."""

    terminal_id: str
    merchant_id: str
    name_location: str          # the card acceptor's name as the cardholder knows it
    currency: str = "978"
    mcc: str = s.MCC_AUTOMATED_FUEL_DISPENSER
    city: str = ""
    country: str = "DEU"
    acquirer_id: str = ""       # field 32, n..11, given by the acquirer

    def field_43(self) -> str:
        return f"{self.name_location[:22]:<22} {self.city[:13]:<13} {self.country[:3]:<3}"

    def fields(self, dialect: Dialect) -> dict[str, str]:
        acquirer = self.acquirer_id or dialect.values["acquirer_id_default"]
        return {"18": self.mcc, dialect.role("acquirer_id"): acquirer, "41": self.terminal_id,
                "42": self.merchant_id, "43": self.field_43(), "49": self.currency}


@dataclass(frozen=True)
class Card:
    """What the card gave us. repr() masks the PAN and hides track 2."""

    pan: str = field(repr=False)
    expiry: str  # YYMM
    entry_mode: str
    pan_sequence: str | None = None  # EMV 5F34 as two digits
    track2: str | None = field(default=None, repr=False)

    @property
    def masked_pan(self) -> str:
        return self.pan[:6] + "*" * (len(self.pan) - 10) + self.pan[-4:]

    def __repr__(self) -> str:
        return (f"Card(pan={self.masked_pan!r}, expiry={self.expiry!r}, entry_mode={self.entry_mode!r}, "
                f"pan_sequence={self.pan_sequence!r})")

    def fields(self, *, with_track: bool) -> dict[str, str]:
        """A swiped card's request carries track 2 alone (it holds the PAN and expiry [CMF]); every other
        message carries the PAN and expiry."""
        out = {"22": self.entry_mode}
        if with_track and self.entry_mode in s.MAGSTRIPE_ENTRY_MODES:
            if self.track2 is None:
                raise MessageError("magnetic stripe entry needs track 2", field="35")
            out["35"] = self.track2
        else:
            out.update({"2": self.pan, "14": self.expiry})
        if self.pan_sequence is not None:
            out["23"] = self.pan_sequence.rjust(3, "0")
        return out


@dataclass(frozen=True)
class FuelLine:
    """One fuel product of a completion (field 63): product code n3 [CNX], unit "L", litres n9 in
    thousandths, unit price n9 in thousandths of the currency unit per litre, amount n12 minor units."""

    product: str
    quantity_milli: int
    unit_price_milli: int
    amount: int
    unit: str = "L"

    def encode(self) -> str:
        for name, value, width in (("quantity", self.quantity_milli, 9), ("price", self.unit_price_milli, 9),
                                   ("amount", self.amount, 12)):
            if not 0 <= value < 10 ** width:
                raise MessageError("fuel line value out of range", field="63", part=name)
        if len(self.product) != 3 or not self.product.isdigit() or self.unit != "L":
            raise MessageError("fuel line product or unit not in the acquirer's format", field="63")
        return (f"{self.product}{self.unit}{self.quantity_milli:09d}{self.unit_price_milli:09d}"
                f"{self.amount:012d}")


def parse_fuel(value: str, dialect: Dialect | None = None) -> list[FuelLine]:
    pattern = (dialect or s.DIALECT).pattern("63")
    if pattern is None or not pattern.fullmatch(value):
        raise MessageError("fuel lines have the wrong format", field="63")
    return [FuelLine(value[i:i + 3], int(value[i + 4:i + 13]), int(value[i + 13:i + 22]),
                     int(value[i + 22:i + 34]), value[i + 3]) for i in range(0, len(value), 34)]


@dataclass(frozen=True)
class Original:
    """The pre-authorization an advice refers to (field 90, plus 37/38 from its response)."""

    stan: str
    transmission: str  # field 7 of the 0100, MMDDhhmmss
    mti: str = "0100"
    rrn: str | None = None
    auth_code: str | None = None
    acquirer_id: str = ""

    def field_90(self) -> str:
        # original MTI n4, STAN n6, transmission date/time n10, acquirer id n11, forwarding id n11
        return f"{self.mti}{self.stan}{self.transmission}{self.acquirer_id[-11:]:0>11}" + "0" * 11
