"""Numbers on the screens, per locale (Babel, CLDR data): money, litres, prices per litre, dates.

Amounts come in minor units (cents), volumes in centilitres, unit prices in thousandths per litre, as
everywhere in forecourt. Digits are the locale's own: CLDR's default numbering system for Persian is
"arabext" (U+06F0..U+06F9), which Babel names but does not substitute, so it is done here.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal

from babel import Locale, UnknownLocaleError, dates, lists, numbers

from contracts.errors import ConfigError
from ui.catalog import text

__all__ = ["digits", "format_date", "format_list", "format_litres", "format_money", "format_number",
           "format_unit_price"]

# CLDR numbering systems (common/supplemental/numberingSystems.xml) whose digits are not ASCII
_DIGITS = {"arabext": "۰۱۲۳۴۵۶۷۸۹", "arab": "٠١٢٣٤٥٦٧٨٩"}


@functools.cache
def _locale(lang: str) -> Locale:
    """The CLDR locale of a language code; English for a code CLDR does not know."""
    try:
        return Locale.parse(lang.strip().lower())
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en")


@functools.cache
def _digit_table(lang: str) -> dict[int, int]:
    system = _locale(lang).default_numbering_system
    own = _DIGITS.get(system)
    return str.maketrans("0123456789", own) if own else {}


def digits(lang: str, value: str) -> str:
    """ASCII digits in value written in the locale's own digits (Persian: ۰..۹)."""
    return value.translate(_digit_table(lang))


def _currency(code: str) -> str:
    if len(code) != 3 or not code.isalpha() or not code.isupper():
        raise ConfigError(f"currency {code!r} is not an ISO 4217 code", key="station.currency")
    return code


def format_money(lang: str, cents: int, currency: str) -> str:
    """An amount in minor units as the locale writes money: en "€18.50", de "18,50 €"."""
    value = Decimal(cents).scaleb(-2)
    shown = numbers.format_currency(value, _currency(currency), locale=_locale(lang),
                                    numbering_system="default")
    return digits(lang, shown)


def format_number(lang: str, value: Decimal | int, places: int = 0) -> str:
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return digits(lang, numbers.format_decimal(value, format=pattern, locale=_locale(lang),
                                               numbering_system="default"))


def format_litres(lang: str, centilitres: int) -> str:
    """A volume with two decimals and the catalogue's unit: en "12.34 L", de "12,34 l"."""
    return text(lang, "unit.litres", litres=format_number(lang, Decimal(centilitres).scaleb(-2), 2))


def format_unit_price(lang: str, milli: int, currency: str) -> str:
    """A price per litre in thousandths, with three decimals: en "€1.789/L", de "1,789 €/l"."""
    value = Decimal(milli).scaleb(-3)
    # the locale's currency pattern with three decimals in place of the currency's two
    loc = _locale(lang)
    pattern = str(loc.currency_formats["standard"].pattern).replace("0.00", "0.000")
    shown = numbers.format_currency(value, _currency(currency), format=pattern, locale=loc,
                                    numbering_system="default", currency_digits=False)
    return text(lang, "unit.per_litre", price=digits(lang, shown))


def format_date(lang: str, when: dt.datetime | dt.date) -> str:
    """A date (and time) in the locale's short form: en "12/1/26, 5:05 PM", de "01.12.26, 17:05"."""
    loc = _locale(lang)
    if isinstance(when, dt.datetime):
        return digits(lang, dates.format_datetime(when, "short", locale=loc))
    return digits(lang, dates.format_date(when, "short", locale=loc))


def format_list(lang: str, items: list[str]) -> str:
    """Items joined as the locale joins a list (CLDR list patterns): en "A, B, and C", fa "A، B، و C"."""
    return lists.format_list(items, locale=_locale(lang)) if items else ""
