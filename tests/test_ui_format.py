"""Money, litres, unit prices and dates per locale (ui.format, Babel's CLDR data)."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts.errors import ConfigError
from ui.catalog import LANGUAGES
from ui.format import (
    digits,
    format_date,
    format_list,
    format_litres,
    format_money,
    format_number,
    format_unit_price,
)


def test_money_is_written_as_each_locale_writes_it() -> None:
    assert format_money("en", 1850, "EUR") == "€18.50"
    assert format_money("de", 123450, "EUR") == "1.234,50\xa0€"
    assert format_money("fr", 123450, "EUR") == "1\u202f234,50\xa0€"
    assert format_money("en", -5, "USD") == "-$0.05"


def test_litres_and_unit_prices_keep_their_decimals() -> None:
    assert format_litres("en", 1234) == "12.34 L"
    assert format_litres("de", 5) == "0,05 l"
    assert format_unit_price("en", 1700, "EUR") == "€1.700/L"
    assert format_unit_price("de", 1789, "EUR") == "1,789\xa0€/l"


def test_persian_numbers_use_persian_digits() -> None:
    assert digits("fa", "0123456789") == "۰۱۲۳۴۵۶۷۸۹"
    shown = format_money("fa", 1850, "EUR")
    assert "۱۸" in shown and "۵۰" in shown and not any(ch in shown for ch in "0123456789")
    assert format_number("fa", 1234) == "۱٬۲۳۴"
    assert digits("de", "12") == "12"


def test_lists_are_joined_as_the_locale_joins_them() -> None:
    assert format_list("en", ["A", "B", "C"]) == "A, B, and C"
    assert format_list("de", ["A", "B"]) == "A und B"
    assert "،" in format_list("fa", ["A", "B", "C"])
    assert format_list("en", []) == ""


def test_dates_per_locale() -> None:
    when = dt.datetime(2026, 12, 1, 17, 5)
    assert format_date("de", when) == "01.12.26, 17:05"
    assert format_date("en", when.date()) == "12/1/26"
    assert not any(ch.isascii() and ch.isdigit() for ch in format_date("fa", when))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_formats_every_kind(lang: str) -> None:
    for shown in (format_money(lang, 99, "EUR"), format_litres(lang, 100), format_unit_price(lang, 1,  "EUR"),
                  format_date(lang, dt.datetime(2026, 1, 2, 3, 4))):
        assert shown and "{" not in shown


def test_unknown_locale_is_english_and_a_bad_currency_a_config_error() -> None:
    assert format_money("xx", 100, "EUR") == "€1.00"
    with pytest.raises(ConfigError):
        format_money("en", 100, "euro")
