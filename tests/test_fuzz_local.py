"""Round trips of the local text and files (fuzz/targets_local.py), bounded for `make test`; every
target's "parses or raises its typed error" property is in tests/test_fuzz_targets.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from contracts.cards import luhn_ok
from contracts.track2 import Track2, parse_track2
from firmware.acquirer.messages import FuelLine, parse_fuel
from fuzz import by_name
from fuzz.harness import check
from fuzz.strategies import BOUNDED

PANS = st.from_regex(r"[0-9]{11,18}", fullmatch=True).map(lambda p: p + luhn_digit(p))
TRACKS = st.builds(Track2, PANS, st.from_regex(r"[0-9]{2}(0[1-9]|1[0-2])", fullmatch=True),
                   st.from_regex(r"[0-9]{3}", fullmatch=True), st.from_regex(r"[0-9]{0,8}", fullmatch=True))


def luhn_digit(partial: str) -> str:
    """The check digit that makes partial + digit pass the Luhn check (ISO/IEC 7812-1 annex B)."""
    for digit in "0123456789":
        if luhn_ok(partial + digit):
            return digit
    raise AssertionError("no Luhn digit")


@BOUNDED
@given(TRACKS, st.sampled_from(["{}", ";{}?", " ;{}?5 "]))
def test_track2_round_trip(track: Track2, framing: str) -> None:
    """parse_track2(raw) == track, with or without sentinels and LRC (ISO/IEC 7813)."""
    assert parse_track2(framing.format(track.raw)) == track


def fuel_line(draw: st.DrawFn) -> FuelLine:
    """A fuel line of field 63 with every field in range: product n3, unit L, figures that fit n9."""
    fields: dict[str, Any] = {f.name: draw(st.from_regex(r"[0-9]{3}", fullmatch=True)) if f.name == "product"
              else "L" if f.name == "unit" else draw(st.integers(0, 10**9 - 1))
              for f in dataclasses.fields(FuelLine)}
    return FuelLine(**fields)


@BOUNDED
@given(st.lists(st.composite(fuel_line)(), min_size=1, max_size=6))
def test_fuel_lines_round_trip(lines: list[FuelLine]) -> None:
    assert parse_fuel("".join(line.encode() for line in lines)) == lines


KEYS = st.dictionaries(st.sampled_from(["id", "station", "state_dir", "language", "programs", "port", "host",
                                        "pumps", "pump_baudrate", "auth", "unknown"]),
                       st.one_of(st.text(max_size=10), st.integers(-5, 70000), st.booleans(),
                                 st.lists(st.integers(0, 40), max_size=3),
                                 st.floats(allow_nan=False, allow_infinity=False)),
                       max_size=5)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if c in '"\\' or not " " <= c <= "~" else c
                             for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


@BOUNDED
@given(st.dictionaries(st.sampled_from(["terminal", "mqtt", "devices", "timeouts", "bank", "extra"]), KEYS,
                       max_size=4))
def test_config_from_valid_toml(sections: dict[str, dict[str, object]]) -> None:
    """Well-formed TOML with keys of every section and values of every type: a config or ConfigError
    (never a TypeError from a value of the wrong type)."""
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
                   for name, keys in sections.items())
    check(by_name("config_toml"), text.encode())
