"""A price change's time on the station's clock: a time the clocks skip or show twice is refused, any other
is stored as the UTC moment it names."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from registry.web.errors import BadInput
from registry.web.pages_network import parse_local
from registry.web.texts import translator

CTX: Any = SimpleNamespace(t=translator("en"))


def test_an_ordinary_time_is_its_utc_moment() -> None:
    assert parse_local(CTX, "2026-07-01T06:00", "Europe/Madrid") == dt.datetime(2026, 7, 1, 4, 0)
    assert parse_local(CTX, "2026-12-01T06:00", "Europe/Madrid") == dt.datetime(2026, 12, 1, 5, 0)
    assert parse_local(CTX, " ", "Europe/Madrid") is None


def test_a_time_the_clocks_skip_is_refused() -> None:
    with pytest.raises(BadInput, match="does not exist"):
        parse_local(CTX, "2027-03-28T02:30", "Europe/Madrid")       # 02:00 -> 03:00 that night


def test_a_time_the_clocks_show_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="comes twice"):
        parse_local(CTX, "2026-10-25T02:30", "Europe/Madrid")       # 03:00 -> 02:00 that night
    assert parse_local(CTX, "2026-10-25T03:30", "Europe/Madrid") == dt.datetime(2026, 10, 25, 2, 30)
