"""registry.fleet.rules: examples for every rule and hypothesis properties (allowances within every bound and
the largest such, money rounding as the pump rounds, windows, period keys across year, ISO week and DST)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ConfigError
from drivers.pump.simulator import amount_for
from registry.fleet.rules import (
    CODE3,
    MAX_KM_PER_DAY,
    LimitView,
    Remaining,
    WalletView,
    WindowView,
    allowance,
    amount_of,
    check_products,
    check_stations,
    in_windows,
    is_fuel,
    is_merchandise,
    local_time,
    odometer_problem,
    parse_prompts,
    paying_wallet,
    period_key,
    product_allowed,
    remaining,
    station_allowed,
    volume_of,
)

TODAY = dt.date(2026, 12, 1)
BERLIN = "Europe/Berlin"
MON, TUE, SUN = 1, 2, 64                        # weekday bits: bit0 = Monday


def wallet(id: int, *, priority: int = 0, available: int = 1000, products: str = "", stations: str = "",
           expires_on: dt.date | None = None, status: str = "active", unit: str = "volume") -> WalletView:
    return WalletView(id, unit, available, products, stations, expires_on, priority, status)


def pay(wallets: list[WalletView], product: str = "diesel", code3: str | None = "019",
        station: str = "ST-001", groups: tuple[str, ...] = (), today: dt.date = TODAY) -> int | None:
    w = paying_wallet(wallets, product=product, code3=code3, station=station, groups=groups, today=today)
    return None if w is None else w.id


# -- product codes -------------------------------------------------------------------------------------------
def test_code3_table_holds_the_cited_fuels_def_and_merchandise() -> None:
    assert {"001", "002", "003", "019", "062", "400"} <= CODE3.keys()
    assert all(len(c) == 3 and c.isdigit() for c in CODE3)
    assert all(is_fuel(c) or is_merchandise(c) for c in CODE3)
    assert "exhaust" in CODE3["062"].lower() and "diesel" in CODE3["019"].lower()


@pytest.mark.parametrize(("code", "fuel", "merch"), [
    ("001", True, False), ("099", True, False), ("000", False, False), ("100", False, False),
    ("399", False, False), ("400", False, True), ("599", False, True), ("600", False, False),
    ("19", False, False), ("0190", False, False), ("abc", False, False), (None, False, False)])
def test_fuel_and_merchandise_ranges(code: str | None, fuel: bool, merch: bool) -> None:
    assert (is_fuel(code), is_merchandise(code)) == (fuel, merch)


# -- product and station specs -------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "product", "code3", "allowed"), [
    ("", "shop", None, True), ("  ", "diesel", "019", True),
    ("019", "diesel", "019", True), ("019", "petrol95", "001", False),
    ("001-099", "diesel", "019", True), ("001-099", "adblue", "062", True), ("001-099", "shop", "400", False),
    ("001-018,020-099", "diesel", "019", False), ("001-018, 019", "diesel", "019", True),
    ("adblue", "adblue", None, True), ("adblue", "adblue", "062", True), ("adblue", "diesel", "019", False),
    ("001-099", "lube", None, False), ("400-599,diesel", "diesel", "019", True),
    ("Diesel", "diesel", "019", False),              # product codes are ids: compared exactly
])
def test_product_allowed(spec: str, product: str, code3: str | None, allowed: bool) -> None:
    assert product_allowed(spec, product, code3) is allowed


@pytest.mark.parametrize("spec", ["19", "0019", "099-001", "1-99", "001 - 099", "diesel,,adblue", "diesel,"])
def test_malformed_product_specs_are_refused_when_set_and_read_as_written_at_the_pump(spec: str) -> None:
    with pytest.raises(ConfigError):
        check_products(spec)
    # a spec stored before the checks never makes an authorization fail: an odd item matches only itself
    assert product_allowed(spec, "diesel", None) is ("diesel" in spec.split(","))


@given(st.integers(1, 999), st.integers(1, 999), st.integers(0, 999))
def test_a_range_matches_exactly_the_codes_between_its_ends(a: int, b: int, code: int) -> None:
    lo, hi = min(a, b), max(a, b)
    assert product_allowed(f"{lo:03d}-{hi:03d}", "x", f"{code:03d}") is (lo <= code <= hi)


@pytest.mark.parametrize(("spec", "station", "groups", "allowed"), [
    ("", "ST-001", (), True), ("ST-001", "ST-001", (), True), ("ST-001, ST-002", "ST-002", (), True),
    ("ST-001", "ST-002", ("north",), False), ("group:north", "ST-002", ("north",), True),
    ("group:north", "ST-002", ("south",), False), ("ST-009,group:south", "ST-002", ("north", "south"), True),
    ("north", "ST-002", ("north",), False),           # a group is named with "group:"
])
def test_station_allowed(spec: str, station: str, groups: tuple[str, ...], allowed: bool) -> None:
    assert station_allowed(spec, station, groups) is allowed


@pytest.mark.parametrize("spec", ["group:", "ST-001,,ST-002", "group:  "])
def test_malformed_station_specs_are_refused_when_set_and_read_as_written_at_the_pump(spec: str) -> None:
    with pytest.raises(ConfigError):
        check_stations(spec)
    assert station_allowed(spec, "ST-001", []) is ("ST-001" in spec.split(","))


# -- which wallet pays ---------------------------------------------------------------------------------------
def test_paying_wallet_takes_the_lowest_priority_then_the_lowest_id() -> None:
    assert pay([wallet(3, priority=1), wallet(2, priority=0), wallet(1, priority=1)]) == 2
    assert pay([wallet(3, priority=1), wallet(1, priority=1)]) == 1


def test_paying_wallet_skips_what_cannot_pay() -> None:
    first_ok = wallet(9, priority=9)
    assert pay([wallet(1, status="closed"), first_ok]) == 9
    assert pay([wallet(1, available=0), wallet(2, available=-500, unit="money"), first_ok]) == 9
    assert pay([wallet(1, products="001-003"), first_ok]) == 9
    assert pay([wallet(1, stations="ST-002"), first_ok]) == 9
    assert pay([wallet(1, stations="group:north"), first_ok], groups=("north",)) == 1
    assert pay([wallet(1, products="001-003")]) is None
    assert pay([]) is None


def test_a_wallet_is_usable_through_its_expiry_day() -> None:
    w = [wallet(1, expires_on=TODAY), wallet(2, priority=5)]
    assert pay(w, today=TODAY) == 1
    assert pay(w, today=TODAY + dt.timedelta(days=1)) == 2


def test_two_wallets_diesel_from_litres_the_rest_from_money() -> None:
    litres = wallet(1, priority=0, products="019", unit="volume")
    money = wallet(2, priority=1, products="", unit="money")
    assert pay([money, litres], product="diesel", code3="019") == 1
    assert pay([money, litres], product="petrol95", code3="001") == 2


wallets_st = st.lists(st.builds(
    wallet, st.integers(1, 30), priority=st.integers(0, 3), available=st.integers(-5, 5),
    products=st.sampled_from(["", "019", "001-003", "diesel"]),
    stations=st.sampled_from(["", "ST-001", "ST-2"]),
    expires_on=st.none() | st.dates(TODAY - dt.timedelta(days=2), TODAY + dt.timedelta(days=2)),
    status=st.sampled_from(["active", "closed"])), max_size=8, unique_by=lambda w: w.id)


@given(wallets_st, st.randoms())
def test_paying_wallet_is_the_first_usable_in_any_order(ws: list[WalletView], rnd: random.Random) -> None:
    def usable(w: WalletView) -> bool:
        return (w.status == "active" and w.available > 0 and (w.expires_on is None or w.expires_on >= TODAY)
                and w.products in ("", "019", "diesel") and w.stations in ("", "ST-001"))
    expected = min((w for w in ws if usable(w)), key=lambda w: (w.priority, w.id), default=None)
    shuffled = list(ws)
    rnd.shuffle(shuffled)
    assert pay(shuffled) == (None if expected is None else expected.id)


# -- time: zones, period keys, windows -----------------------------------------------------------------------
def test_local_time_follows_berlin_dst() -> None:
    before, after = (local_time(dt.datetime(2026, 3, 29, 0, 59), BERLIN),
                     local_time(dt.datetime(2026, 3, 29, 1, 0), BERLIN))     # clocks go forward at 01:00 UTC
    assert before.isoformat() == "2026-03-29T01:59:00+01:00"
    assert after.isoformat() == "2026-03-29T03:00:00+02:00"
    first = local_time(dt.datetime(2026, 10, 25, 0, 30), BERLIN)    # 02:30 twice in the night
    second = local_time(dt.datetime(2026, 10, 25, 1, 30), BERLIN)
    assert (first.hour, first.utcoffset(), second.hour, second.utcoffset()) == (
        2, dt.timedelta(hours=2), 2, dt.timedelta(hours=1))
    aware = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    assert local_time(aware, BERLIN).hour == 13


@pytest.mark.parametrize("tz", ["Nowhere/City", "", "../etc/passwd", "UTC "])
def test_unknown_time_zone_is_a_typed_value_error(tz: str) -> None:
    with pytest.raises(ConfigError) as err:
        local_time(dt.datetime(2026, 12, 1), tz)
    assert isinstance(err.value, ValueError)


def test_period_keys_across_the_year_and_iso_week_boundaries() -> None:
    new_year_berlin = local_time(dt.datetime(2026, 12, 31, 23, 30), BERLIN)   # 00:30 on 1 January
    assert [period_key(p, new_year_berlin) for p in ("day", "week", "month", "year", "lifetime", "sale")] == [
        "D2027-01-01", "W2026-53", "M2027-01", "Y2027", "L", None]
    same_instant_utc = local_time(dt.datetime(2026, 12, 31, 23, 30), "UTC")
    assert period_key("day", same_instant_utc) == "D2026-12-31"
    assert period_key("year", same_instant_utc) == "Y2026"
    assert period_key("week", dt.datetime(2027, 1, 4)) == "W2027-01"                   # the first ISO Monday
    assert period_key("week", dt.datetime(2024, 12, 30)) == "W2025-01"                 # ISO year ahead
    assert period_key("year", dt.datetime(2024, 12, 30)) == "Y2024"
    # the day key changes at local midnight, not at UTC midnight (23:00 UTC in winter, 22:00 in summer)
    assert period_key("day", local_time(dt.datetime(2026, 7, 14, 22, 0), BERLIN)) == "D2026-07-15"
    assert period_key("day", local_time(dt.datetime(2026, 7, 14, 21, 59), BERLIN)) == "D2026-07-14"
    with pytest.raises(ConfigError):
        period_key("fortnight", dt.datetime(2026, 12, 1))


@given(st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1)))
def test_a_local_week_key_is_that_of_its_monday_and_not_of_the_sunday_before(utc: dt.datetime) -> None:
    local = local_time(utc, BERLIN)
    monday = local.date() - dt.timedelta(days=local.weekday())
    key = period_key("week", local)
    assert key == period_key("week", dt.datetime.combine(monday, dt.time()))
    assert key != period_key("week", dt.datetime.combine(monday - dt.timedelta(days=1), dt.time()))
    assert period_key("day", local) == f"D{local.date().isoformat()}"
    assert local.utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2))
    assert local.astimezone(dt.UTC).replace(tzinfo=None) == utc


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A local time in the week of Monday 30 November 2026 (day 0 = Monday)."""
    return dt.datetime(2026, 11, 30, hour, minute) + dt.timedelta(days=day)


def test_windows_of_a_card_and_of_its_account_must_both_allow() -> None:
    assert in_windows([], at(5, 3)) is True
    weekdays = WindowView("card", 0b0011111, 6 * 60, 20 * 60)
    assert in_windows([weekdays], at(1, 10)) is True
    assert in_windows([weekdays], at(5, 10)) is False                                  # Saturday
    assert in_windows([weekdays], at(1, 20)) is False                                  # end is exclusive
    assert in_windows([weekdays], at(1, 6)) is True
    mornings = WindowView("account", 127, 5 * 60, 12 * 60)
    assert in_windows([weekdays, mornings], at(1, 10)) is True
    assert in_windows([weekdays, mornings], at(1, 13)) is False                        # the account says no
    afternoons = WindowView("card", 127, 12 * 60, 18 * 60)
    assert in_windows([weekdays, afternoons], at(5, 13)) is True                       # one card row suffices


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    monday_night = WindowView("card", MON, 22 * 60, 6 * 60)
    assert in_windows([monday_night], at(0, 23)) is True
    assert in_windows([monday_night], at(1, 3)) is True                                # Tuesday morning
    assert in_windows([monday_night], at(1, 6)) is False
    assert in_windows([monday_night], at(0, 3)) is False                               # Sunday night not set
    assert in_windows([monday_night], at(1, 22)) is False
    sunday_night = WindowView("card", SUN, 22 * 60, 6 * 60)
    assert in_windows([sunday_night], at(0, 3)) is True                                # wraps the week
    whole_day = WindowView("card", TUE, 0, 0)
    assert in_windows([whole_day], at(1, 0)) and in_windows([whole_day], at(1, 23, 59))
    assert not in_windows([whole_day], at(2, 0))
    assert in_windows([WindowView("card", TUE, 0, 1440)], at(1, 23, 59))


@pytest.mark.parametrize("bad", [(128, 0, 60), (-1, 0, 60), (127, 1440, 60), (127, 0, 1441), (127, -5, 60)])
def test_out_of_range_windows_raise(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ConfigError):
        WindowView("card", *bad)


minutes = st.integers(0, 1439)


@given(minutes, minutes, st.integers(0, 6), minutes)
def test_a_window_and_its_complement_share_no_minute(start: int, end: int, day: int, minute: int) -> None:
    local = at(day, minute // 60, minute % 60)
    inside = in_windows([WindowView("card", 127, start, end)], local)
    if start < end:
        assert inside is (start <= minute < end)
    elif start > end:
        assert inside is (minute >= start or minute < end)
    if start != end:
        assert inside is not in_windows([WindowView("card", 127, end, start)], local)


# -- limits and allowances -----------------------------------------------------------------------------------
def test_remaining_is_the_least_of_the_limits_per_unit() -> None:
    assert remaining([]) == Remaining(None, None, None)
    left = remaining([LimitView("card", "day", "volume", 5000, 1200),
                      LimitView("account", "month", "volume", 100_000, 97_000),
                      LimitView("card", "week", "money", 20_000, 25_000),
                      LimitView("card", "sale", "money", 15_000, 99_999),
                      LimitView("card", "day", "count", 3, 2)])
    assert left == Remaining(cents=0, volume_cl=3000, sales_left=1)
    assert remaining([LimitView("card", "sale", "volume", 8000, 123_456)]).volume_cl == 8000   # used ignored
    assert remaining([LimitView("card", "lifetime", "count", 5, 5)]).sales_left == 0
    with pytest.raises(ConfigError):
        LimitView("card", "hour", "money", 1, 0)
    with pytest.raises(ConfigError):
        LimitView("card", "day", "litres", 1, 0)


limit_st = st.builds(LimitView, st.sampled_from(["card", "account"]),
                     st.sampled_from(["sale", "day", "week", "month", "year", "lifetime"]),
                     st.sampled_from(["money", "volume", "count"]), st.integers(0, 10**6),
                     st.integers(0, 2 * 10**6))


@given(st.lists(limit_st, max_size=8))
def test_remaining_is_never_negative_and_within_each_limit(limits: list[LimitView]) -> None:
    left = remaining(limits)
    by_unit = {"money": left.cents, "volume": left.volume_cl, "count": left.sales_left}
    for lim in limits:
        value = by_unit[lim.unit]
        assert value is not None and 0 <= value
        assert value <= (lim.maximum if lim.period == "sale" else max(0, lim.maximum - lim.used))
    for unit, value in by_unit.items():
        assert (value is None) is (unit not in {lim.unit for lim in limits})


def test_amount_rounds_half_up_as_the_pump() -> None:
    assert amount_of(1000, 1659) == 1659                  # 10 l at 1.659 a litre
    assert amount_of(3, 1500) == 5 and amount_of(1, 1499) == 1 and amount_of(0, 1659) == 0
    assert volume_of(1659, 1659) == 1000 and volume_of(0, 1659) == 0 and volume_of(-3, 1659) == 0
    with pytest.raises(ConfigError):
        volume_of(100, 0)


prices = st.integers(1, 999_999)


@given(st.integers(0, 10**7), prices)
def test_amount_of_is_the_pumps_amount(volume: int, price: int) -> None:
    assert amount_of(volume, price) == amount_for(volume, price)


@given(st.integers(0, 10**7), prices)
def test_volume_of_is_the_largest_volume_within_the_amount(cents: int, price: int) -> None:
    v = volume_of(cents, price)
    assert amount_of(v, price) <= cents < amount_of(v + 1, price)


@given(st.integers(0, 10**7), prices)
def test_amount_volume_round_trip(volume: int, price: int) -> None:
    cents = amount_of(volume, price)
    assert volume_of(cents, price) >= volume
    assert amount_of(volume_of(cents, price), price) == cents


def test_allowance_examples() -> None:
    unlimited = Remaining(None, None, None)
    assert allowance(wallet_unit="volume", wallet_available=3000, price_milli=1659, remaining=unlimited,
                     max_fill_cl=9999) == (3000, amount_of(3000, 1659))
    assert allowance(wallet_unit="money", wallet_available=5000, price_milli=1659, remaining=unlimited,
                     max_fill_cl=9999) == (3014, 5000)
    day_left = Remaining(None, 2500, None)                # the day's remainder, not the month's
    assert allowance(wallet_unit="volume", wallet_available=90_000, price_milli=1659, remaining=day_left,
                     max_fill_cl=9999)[0] == 2500
    assert allowance(wallet_unit="volume", wallet_available=90_000, price_milli=1659,
                     remaining=Remaining(1000, None, None), max_fill_cl=9999) == (603, 1000)
    assert allowance(wallet_unit="volume", wallet_available=500, price_milli=1659, remaining=Remaining(
        None, None, 0), max_fill_cl=9999) == (0, 0)
    assert allowance(wallet_unit="money", wallet_available=-200, price_milli=1659, remaining=unlimited,
                     max_fill_cl=9999) == (0, 0)
    with pytest.raises(ConfigError):
        allowance(wallet_unit="litres", wallet_available=1, price_milli=1, remaining=unlimited, max_fill_cl=1)
    with pytest.raises(ConfigError):
        allowance(wallet_unit="money", wallet_available=1, price_milli=0, remaining=unlimited, max_fill_cl=1)


bound = st.none() | st.integers(-100, 10**6)


@given(st.sampled_from(["money", "volume"]), st.integers(-10**4, 10**6), prices, bound, bound,
       st.none() | st.integers(0, 3), st.integers(0, 10**5))
def test_allowance_never_exceeds_a_bound_and_is_the_largest(unit: str, available: int, price: int,
                                                           cents: int | None, volume_cl: int | None,
                                                           sales_left: int | None, max_fill: int) -> None:
    left = Remaining(None if cents is None else max(cents, 0),
                     None if volume_cl is None else max(volume_cl, 0), sales_left)
    volume, amount = allowance(wallet_unit=unit, wallet_available=available, price_milli=price,
                               remaining=left, max_fill_cl=max_fill)
    volume_bounds = [max_fill] + [b for b in (left.volume_cl, available if unit == "volume" else None)
                                  if b is not None]
    money_bounds = [b for b in (left.cents, available if unit == "money" else None) if b is not None]

    def fits(v: int) -> bool:
        return all(v <= b for b in volume_bounds) and all(amount_of(v, price) <= b for b in money_bounds)

    assert volume >= 0 and amount == amount_of(volume, price)
    if sales_left == 0:
        assert (volume, amount) == (0, 0)
        return
    assert volume == 0 or fits(volume)
    assert not fits(volume + 1)                            # max_fill is always a bound: never unbounded
    if fits(0) and volume == 0:
        assert not fits(1)


# -- odometer and prompts ------------------------------------------------------------------------------------
def test_odometer_plausibility() -> None:
    last = dt.datetime(2026, 12, 1, 8, 0)
    assert odometer_problem(None, None, 5, last) is None                              # no last reading
    assert odometer_problem(10_000, last, 9_999, last) == "odometer_backwards"
    assert odometer_problem(10_000, None, 9_999, last) == "odometer_backwards"
    assert odometer_problem(10_000, None, 999_999, last) is None                       # no time to judge by
    assert odometer_problem(10_000, last, 10_000, last) is None
    assert odometer_problem(10_000, last, 10_000 + MAX_KM_PER_DAY, last + dt.timedelta(minutes=5)) is None
    assert odometer_problem(10_000, last, 10_001 + MAX_KM_PER_DAY, last + dt.timedelta(hours=23)) == (
        "odometer_implausible")
    assert odometer_problem(10_000, last, 14_000, last + dt.timedelta(hours=24)) is None   # day 2 started
    assert odometer_problem(10_000, last, 14_001, last + dt.timedelta(hours=47)) == "odometer_implausible"
    assert odometer_problem(10_000, last, 12_000, last - dt.timedelta(hours=3)) is None    # clock behind


def test_parse_prompts() -> None:
    assert parse_prompts("") == () and parse_prompts(" , ") == ()
    assert parse_prompts("driver_id,vehicle,odometer") == ("odometer", "vehicle", "driver_id")
    assert parse_prompts(" vehicle , vehicle ") == ("vehicle",)
    with pytest.raises(ConfigError):
        parse_prompts("odometer,pin")
