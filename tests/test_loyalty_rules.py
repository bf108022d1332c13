"""contracts.loyalty: the points a sale earns (worked examples of issue 15, properties) and the compact form
the signed configuration carries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import loyalty
from contracts.errors import ConfigError, MessageError
from contracts.loyalty import (
    EarnRule,
    Programme,
    Promotion,
    SaleFacts,
    earn,
    programme_doc,
    programme_from_doc,
)
from contracts.signing import CONFIG_BODY

DEC = dt.date(2026, 12, 1)
PER_LITRE = EarnRule("*", "volume", 1000)                         # 1 point per litre
PREMIUM_X2 = Promotion("Premium double points", 1, product="98", starts_on=DEC, ends_on=dt.date(2026, 12, 31),
                       multiplier_pct=200)
TIERS = {"base": 100, "silver": 125, "gold": 150, "platinum": 200}


def sale(product: str = "98", volume_cl: int = 5000, amount_cents: int = 9500, day: dt.date = DEC,
         group: str = "fuel", station: str = "ST-1") -> SaleFacts:
    return SaleFacts(product, group, station, volume_cl, amount_cents, day)


def test_doctests() -> None:
    assert doctest.testmod(loyalty).failed == 0


def test_double_points_on_premium_this_month_only() -> None:
    p = Programme(rules=(PER_LITRE,), promotions=(PREMIUM_X2,))
    assert earn(p, sale(), tier="base", first_use=False).points == 100
    assert earn(p, sale(product="95"), tier="base", first_use=False).points == 50       # not premium
    assert earn(p, sale(day=dt.date(2027, 1, 1)), tier="base", first_use=False).points == 50   # next month
    assert earn(p, sale(day=dt.date(2026, 11, 30)), tier="base", first_use=False).points == 50


def test_triple_points_when_first_used_within_30_days() -> None:
    p = Programme(rules=(PER_LITRE,), promotions=(PREMIUM_X2,), first_use_days=30, first_use_pct=300)
    issued = dt.date(2026, 11, 5)
    first = loyalty.first_use_applies(p, issued, DEC, earned_before=False)
    got = earn(p, sale(), tier="base", first_use=first)
    assert first and got.points == 300                      # 50 L, x2 premium, x3 first use
    assert [s.kind for s in got.steps] == ["base", "promotion", "first_use"]
    assert not loyalty.first_use_applies(p, issued, dt.date(2026, 12, 6), earned_before=False)   # day 31
    assert not loyalty.first_use_applies(p, issued, DEC, earned_before=True)   # not the first sale


@pytest.mark.parametrize(("tier", "points"), [("base", 50), ("silver", 62), ("gold", 75), ("platinum", 100),
                                              ("unknown", 50)])
def test_tier_multipliers_round_down_once(tier: str, points: int) -> None:
    p = Programme(rules=(PER_LITRE,), tiers=TIERS)
    assert earn(p, sale(product="95"), tier=tier, first_use=False).points == points   # 62.5 -> 62


def test_rounding_is_once_at_the_end() -> None:
    # 0.5 point per litre of 1.99 L is 0.995, x 3 is 2.985: rounding each step would give 0
    p = Programme(rules=(EarnRule("*", "volume", 500),), promotions=(Promotion("x3", 1, multiplier_pct=300),))
    assert earn(p, sale(volume_cl=199), tier="base", first_use=False).points == 2


def test_most_specific_rule_wins_and_money_basis() -> None:
    rules = (EarnRule("*", "volume", 1000), EarnRule("group:shop", "money", 2000),
             EarnRule("COFFEE", "money", 5000))
    p = Programme(rules=rules)
    assert earn(p, sale("COFFEE", 0, 250, group="shop"), tier="base", first_use=False).points == 12   # 12.5
    assert earn(p, sale("CHOC", 0, 250, group="shop"), tier="base", first_use=False).points == 5
    assert earn(p, sale("95", 1000, 1900), tier="base", first_use=False).points == 10


def test_rule_windows_and_overlaps() -> None:
    old = EarnRule("*", "volume", 1000, ends_on=dt.date(2026, 11, 30))
    new = EarnRule("*", "volume", 3000, starts_on=DEC)
    p = Programme(rules=(new, old))
    assert earn(p, sale(day=dt.date(2026, 11, 30)), tier="base", first_use=False).points == 50
    assert earn(p, sale(), tier="base", first_use=False).points == 150
    # two in force at once: the one that started last
    both = Programme(rules=(EarnRule("*", "volume", 3000, starts_on=DEC), EarnRule("*", "volume", 1000)))
    assert earn(both, sale(), tier="base", first_use=False).points == 150


def test_no_rule_earns_promotion_bonus_only_and_nothing_earns_nothing() -> None:
    p = Programme(promotions=(Promotion("Wash bonus", 1, product="group:carwash", bonus_points=20),))
    assert earn(p, sale("WASH", 0, 900, group="carwash"), tier="base", first_use=False).points == 20
    assert earn(p, sale("95"), tier="base", first_use=False).points == 0
    assert earn(p, sale("WASH", 0, 0, group="carwash"), tier="gold", first_use=True) == loyalty.Earned(0, ())


def test_promotion_station_filter() -> None:
    promo = Promotion("North x2", 1, stations=("ST-9", "group:north"), multiplier_pct=200)
    p = Programme(rules=(PER_LITRE,), promotions=(promo,))
    assert earn(p, sale(product="95", station="ST-9"), tier="base", first_use=False).points == 100
    assert earn(p, sale(product="95"), tier="base", first_use=False).points == 50
    north = dataclasses.replace(sale(product="95"), station_groups=("north",))
    assert earn(p, north, tier="base", first_use=False).points == 100


def test_order_matters_as_documented() -> None:
    bonus_first = (Promotion("+10", 1, bonus_points=10), Promotion("x2", 2, multiplier_pct=200))
    mult_first = (Promotion("+10", 2, bonus_points=10), Promotion("x2", 1, multiplier_pct=200))
    a = earn(Programme((PER_LITRE,), bonus_first), sale(product="95"), tier="base", first_use=False)
    b = earn(Programme((PER_LITRE,), mult_first), sale(product="95"), tier="base", first_use=False)
    assert (a.points, b.points) == (120, 110)
    assert [s.what for s in a.steps] == ["*", "+10", "x2"]


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        EarnRule("*", "weight", 1000)
    with pytest.raises(ConfigError):
        EarnRule("*", "volume", -1)
    with pytest.raises(ConfigError):
        Promotion("x", 1, multiplier_pct=-5)
    with pytest.raises(ConfigError):
        Promotion("x", 1, starts_on=DEC, ends_on=dt.date(2026, 11, 1))
    with pytest.raises(ConfigError):
        Programme(tiers={"Gold Star": 150})
    with pytest.raises(ConfigError):
        earn(Programme(), sale(volume_cl=-1), tier="base", first_use=False)


# -- properties ------------------------------------------------------------------------------------------

_dates = st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31))
_promos = st.builds(Promotion, name=st.text("abc|", min_size=1, max_size=8), position=st.integers(0, 9),
                    product=st.sampled_from(["*", "95", "98", "group:fuel", "group:shop"]),
                    stations=st.sampled_from([(), ("ST-1",), ("ST-2", "group:north")]),
                    starts_on=st.none() | st.just(DEC), ends_on=st.none() | st.just(dt.date(2027, 6, 30)),
                    multiplier_pct=st.integers(0, 500), bonus_points=st.integers(0, 100), stop=st.booleans())
_rules = st.builds(EarnRule, product=st.sampled_from(["*", "95", "group:fuel"]),
                   basis=st.sampled_from(["volume", "money"]), milli_points=st.integers(0, 10_000))
_programmes = st.builds(Programme, rules=st.lists(_rules, max_size=3).map(tuple),
                        promotions=st.lists(_promos, max_size=5).map(tuple),
                        first_use_days=st.integers(0, 60), first_use_pct=st.integers(0, 500),
                        tiers=st.just(TIERS))
_sales = st.builds(SaleFacts, product=st.sampled_from(["95", "98", "SHOP1"]), group=st.sampled_from(["fuel",
                   "shop"]), station=st.sampled_from(["ST-1", "ST-2"]), volume_cl=st.integers(0, 20_000),
                   amount_cents=st.integers(0, 50_000), day=_dates)


@settings(max_examples=150, deadline=None)
@given(_programmes, _sales, st.sampled_from(list(TIERS)), st.booleans())
def test_never_negative_and_doc_round_trip(p: Programme, facts: SaleFacts, tier: str, first: bool) -> None:
    got = earn(p, facts, tier=tier, first_use=first)
    assert got.points >= 0
    doc = programme_doc(p)
    assert CONFIG_BODY["programs"]([{"name": "loyalty", "enabled": 1, "settings": doc}])
    again = programme_from_doc(doc)
    assert earn(again, facts, tier=tier, first_use=first) == got


@settings(max_examples=150, deadline=None)
@given(_programmes, _sales, st.integers(0, 10_000), st.sampled_from(list(TIERS)), st.booleans())
def test_monotone_in_volume_for_a_volume_rule(p: Programme, facts: SaleFacts, more: int, tier: str,
                                              first: bool) -> None:
    p = dataclasses.replace(p, rules=(EarnRule("*", "volume", 1500),))
    facts = dataclasses.replace(facts, volume_cl=max(facts.volume_cl, 1))
    bigger = dataclasses.replace(facts, volume_cl=facts.volume_cl + more)
    small = earn(p, facts, tier=tier, first_use=first).points
    assert earn(p, bigger, tier=tier, first_use=first).points >= small


@settings(max_examples=150, deadline=None)
@given(_programmes, _sales, _promos)
def test_stop_really_stops(p: Programme, facts: SaleFacts, later: Promotion) -> None:
    stopper = Promotion("stop", -1, multiplier_pct=100, stop=True)      # applies to every sale, first
    after = dataclasses.replace(later, position=99)
    with_stop = dataclasses.replace(p, promotions=(*p.promotions, stopper, after))
    plain = dataclasses.replace(p, promotions=())
    got = earn(with_stop, facts, tier="base", first_use=False)
    assert got.points == earn(plain, facts, tier="base", first_use=False).points
    assert [s.what for s in got.steps if s.kind == "promotion"] in ([], ["stop"])


def test_doc_fits_a_station_and_refuses_what_does_not() -> None:
    many = tuple(Promotion(f"p{i}", i, stations=(f"ST-{i}",), multiplier_pct=150) for i in range(40))
    p = Programme(rules=(PER_LITRE,), promotions=many)
    with pytest.raises(MessageError):
        programme_doc(p)
    doc = programme_doc(p, station="ST-3")
    assert programme_from_doc(doc).promotions == (dataclasses.replace(many[3], stations=()),)
    ended = Programme(rules=(EarnRule("*", "volume", 1, ends_on=dt.date(2026, 1, 1)), PER_LITRE))
    assert list(programme_from_doc(programme_doc(ended, since=DEC)).rules) == [PER_LITRE]


def test_promotions_at_one_position_keep_their_order_through_a_sorted_json_round_trip() -> None:
    """The registry orders promotions by position, then id: a multiplier and a bonus at one position, the
    10th and 11th promotions ("promo_9", "promo_10": a sorted JSON puts "promo_10" before "promo_2")."""
    others = tuple(Promotion(f"other {i}", i % 4, product="98", bonus_points=7) for i in range(9))
    double = Promotion("double", 5, multiplier_pct=200)
    bonus = Promotion("bonus", 5, bonus_points=5)
    p = Programme(rules=(PER_LITRE,), promotions=(*others, double, bonus))
    sale = SaleFacts("95", "fuel", "ST-1", 1000, 1659, DEC)
    assert earn(p, sale, tier="base", first_use=False).points == 25          # 10 x 2 + 5
    doc = programme_doc(p)
    assert [doc["promo_9"], doc["promo_10"]] == ["5|*||||200|0|0|double", "5|*||||100|5|0|bonus"]
    again = programme_from_doc(json.loads(json.dumps(doc, sort_keys=True)))
    assert again.promotions == tuple(sorted(p.promotions, key=lambda x: x.position))   # stable: as listed
    assert earn(again, sale, tier="base", first_use=False) == earn(p, sale, tier="base", first_use=False)


@pytest.mark.parametrize("doc", [{"first_use_days": 30}, {"first_use_days": 30, "first_use_pct": 300, "x": 1},
                                 {"first_use_days": 30, "first_use_pct": 300, "rule_0": "*|volume"},
                                 {"first_use_days": 30, "first_use_pct": 300, "rule_0": "*|weight|1||"},
                                 {"first_use_days": 30, "first_use_pct": 300, "promo_0": "1|*||2026-13-01"}])
def test_malformed_doc_is_a_message_error(doc: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        programme_from_doc(doc)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 20_000), st.integers(0, 5000), st.integers(0, 500), st.integers(0, 100),
       st.sampled_from(list(TIERS)), st.booleans())
def test_order_as_documented_bonus_before_or_after_a_multiplier(volume_cl: int, milli: int, pct: int,
                                                                bonus: int, tier: str, first: bool) -> None:
    rule = EarnRule("*", "volume", milli)
    base = Fraction(milli * volume_cl, 100_000)                  # thousandths per litre, centilitres
    after = Fraction(300 if first else 100, 100) * Fraction(TIERS[tier], 100)
    plus, times = Promotion("+", 1, bonus_points=bonus), Promotion("x", 2, multiplier_pct=pct)
    facts = sale(product="95", volume_cl=volume_cl)
    p = Programme((rule,), (plus, times), tiers=TIERS)
    q = Programme((rule,), (dataclasses.replace(plus, position=3), times), tiers=TIERS)
    assert earn(p, facts, tier=tier, first_use=first).points == int((base + bonus) * pct / 100 * after)
    assert earn(q, facts, tier=tier, first_use=first).points == int((base * pct / 100 + bonus) * after)
