"""The points a sale earns: one pure function the registry books and the terminal prints offline.

Order (docs/loyalty.md): the base from the most specific earn rule in force (a product code, then
"group:NAME", then "*"; per litre or per currency unit, in thousandths of a point) -> promotions in position
order (multiplier_pct scales the running figure, then bonus_points adds; one with `stop` ends the list) ->
the first-use bonus (first_use_pct) -> the tier's multiplier -> rounded down to whole points, once, at the
end. Exact arithmetic (fractions, never floats). The daily cap per card is the registry's (it alone sees a
card's other sales of the day).

>>> rule = EarnRule("*", "volume", 1000)                     # one point per litre of anything
>>> double = Promotion("Premium x2", 1, product="95", starts_on=dt.date(2026, 12, 1),
...                    ends_on=dt.date(2026, 12, 31), multiplier_pct=200)
>>> programme = Programme(rules=(rule,), promotions=(double,), tiers={"gold": 150})
>>> sale = SaleFacts(product="95", group="fuel", station="ST-1", volume_cl=4050, amount_cents=7290,
...                  day=dt.date(2026, 12, 2))
>>> earn(programme, sale, tier="base", first_use=False).points     # 40.5 x 2 = 81
81
>>> earn(programme, sale, tier="gold", first_use=True).points      # 81 x 3 x 1.5 = 364.5
364
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from contracts.errors import ConfigError, MessageError

__all__ = ["BASES", "NO_POINTS", "EarnRule", "Earned", "Programme", "Promotion", "SaleFacts", "Step", "earn",
           "first_use_applies", "programme_doc", "programme_from_doc", "rule_for"]

BASES = ("volume", "money")
# Card programs whose sales earn nothing: one paid by a paper voucher (charged nothing; the voucher was a
# gift, or paid for when it was bought) gets no points, whatever card rides along.
NO_POINTS = frozenset({"voucher"})
MAX_MILLI = 10**9           # thousandths of a point per litre or unit: far above any real programme
MAX_PCT = 10_000            # a multiplier of at most 100 times
MAX_BONUS = 10**7
_TIER = re.compile(r"[a-z][a-z0-9_]{0,15}", re.ASCII)     # a tier's name is a configuration key part
_TEXT_MAX = 200             # contracts.signing: a program setting's text


def _date_ok(starts: dt.date | None, ends: dt.date | None, what: str) -> None:
    if starts is not None and ends is not None and ends < starts:
        raise ConfigError(f"{what} ends before it starts", key="ends_on")


def _in(day: dt.date, starts: dt.date | None, ends: dt.date | None) -> bool:
    return (starts is None or starts <= day) and (ends is None or day <= ends)


@dataclass(frozen=True)
class EarnRule:
    """Thousandths of a point per litre (basis "volume") or per currency unit ("money") for a product
    code, "group:NAME" or "*", in force from starts_on to ends_on inclusive (None: open)."""

    product: str
    basis: str
    milli_points: int
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ConfigError("earn rule basis must be volume or money", key="basis")
        if not 0 <= self.milli_points <= MAX_MILLI:
            raise ConfigError(f"milli points must be 0 to {MAX_MILLI}", key="milli_points")
        if not self.product or "|" in self.product or len(self.product) > 32:
            raise ConfigError("earn rule product must be a code, group:NAME or *", key="product")
        _date_ok(self.starts_on, self.ends_on, "earn rule")


@dataclass(frozen=True)
class Promotion:
    """Applies to a sale of `product` ("*", a code or "group:NAME") at one of `stations` (station ids or
    "group:NAME"; empty: any) from starts_on to ends_on inclusive."""

    name: str
    position: int
    product: str = "*"
    stations: tuple[str, ...] = ()
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    multiplier_pct: int = 100
    bonus_points: int = 0
    stop: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.multiplier_pct <= MAX_PCT:
            raise ConfigError(f"multiplier must be 0 to {MAX_PCT} percent", key="multiplier_pct")
        if not 0 <= self.bonus_points <= MAX_BONUS:
            raise ConfigError(f"bonus points must be 0 to {MAX_BONUS}", key="bonus_points")
        if not self.product or "|" in self.product or any("|" in x or "," in x for x in self.stations):
            raise ConfigError("promotion product or station not valid", key="product")
        _date_ok(self.starts_on, self.ends_on, "promotion")


@dataclass(frozen=True)
class Programme:
    """What earn() needs: the rules, the promotions (applied by position), the first-use bonus and the
    tiers' multipliers (percent; a tier not named here multiplies by 100)."""

    rules: tuple[EarnRule, ...] = ()
    promotions: tuple[Promotion, ...] = ()
    first_use_days: int = 30
    first_use_pct: int = 300
    tiers: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.first_use_days <= 3660:
            raise ConfigError("first use days must be 0 to 3660", key="first_use_days")
        if not 0 <= self.first_use_pct <= MAX_PCT:
            raise ConfigError(f"first use percent must be 0 to {MAX_PCT}", key="first_use_pct")
        for name, pct in self.tiers.items():
            if not _TIER.fullmatch(name) or not 0 <= pct <= MAX_PCT:
                raise ConfigError("a tier is a lower-case name and 0 to 10000 percent", key="tiers")


@dataclass(frozen=True)
class SaleFacts:
    """What of a sale earning depends on; `day` is the sale's local date (the station's account zone)."""

    product: str
    group: str
    station: str
    volume_cl: int
    amount_cents: int
    day: dt.date
    station_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step applied: kind (base, promotion, first_use, tier), what (a rule's product, a promotion's
    name, a tier), its percent and bonus, and the running figure after it in thousandths of a point
    (rounded down; the exact figure goes on)."""

    kind: str
    what: str
    pct: int
    bonus: int
    milli_after: int


@dataclass(frozen=True)
class Earned:
    points: int
    steps: tuple[Step, ...]


def _product_match(spec: str, facts: SaleFacts) -> bool:
    return spec == "*" or spec == facts.product or spec == f"group:{facts.group}"


def _station_match(stations: tuple[str, ...], facts: SaleFacts) -> bool:
    return not stations or facts.station in stations or any(
        s.startswith("group:") and s[6:] in facts.station_groups for s in stations)


def rule_for(rules: Iterable[EarnRule], facts: SaleFacts) -> EarnRule | None:
    """The most specific rule in force on the sale's day: its product code, else its group, else "*".
    Two of one kind in force (overlapping windows): the one that started last, then the later listed.

    >>> day = dt.date(2026, 1, 5)
    >>> rules = [EarnRule("*", "volume", 1000), EarnRule("group:fuel", "volume", 2000)]
    >>> rule_for(rules, SaleFacts("95", "fuel", "S", 100, 100, day)).milli_points
    2000
    """
    rank = {facts.product: 0, f"group:{facts.group}": 1, "*": 2}
    best: tuple[int, dt.date, int] | None = None
    chosen = None
    for index, rule in enumerate(rules):
        if rule.product not in rank or not _in(facts.day, rule.starts_on, rule.ends_on):
            continue
        key = (-rank[rule.product], rule.starts_on or dt.date.min, index)
        if best is None or key > best:
            best, chosen = key, rule
    return chosen


def first_use_applies(programme: Programme, issued_on: dt.date, day: dt.date, *, earned_before: bool) -> bool:
    """Whether a sale on `day` gets the first-use bonus: the account's first earning sale, within
    first_use_days of the card's issue (day of issue counted as day 0).

    >>> first_use_applies(Programme(), dt.date(2026, 1, 1), dt.date(2026, 1, 31), earned_before=False)
    True
    >>> first_use_applies(Programme(), dt.date(2026, 1, 1), dt.date(2026, 2, 1), earned_before=False)
    False
    """
    return not earned_before and 0 <= (day - issued_on).days <= programme.first_use_days


def _milli(value: Fraction) -> int:
    return int(value * 1000 // 1)


def earn(programme: Programme, facts: SaleFacts, *, tier: str, first_use: bool) -> Earned:
    """The whole points the sale earns and the steps applied, in the documented order. A sale of nothing
    (no volume, no amount) earns nothing."""
    if facts.volume_cl < 0 or facts.amount_cents < 0:
        raise ConfigError("a sale's volume and amount are not negative", key="volume_cl")
    if facts.volume_cl == 0 and facts.amount_cents == 0:
        return Earned(0, ())
    steps: list[Step] = []
    running = Fraction(0)
    rule = rule_for(programme.rules, facts)
    if rule is not None:
        units = facts.volume_cl if rule.basis == "volume" else facts.amount_cents   # hundredths of either
        running = Fraction(rule.milli_points * units, 100_000)
        steps.append(Step("base", rule.product, 100, 0, _milli(running)))
    for promo in sorted(programme.promotions, key=lambda p: p.position):
        if not (_in(facts.day, promo.starts_on, promo.ends_on) and _product_match(promo.product, facts)
                and _station_match(promo.stations, facts)):
            continue
        running = running * promo.multiplier_pct / 100 + promo.bonus_points
        steps.append(Step("promotion", promo.name, promo.multiplier_pct, promo.bonus_points, _milli(running)))
        if promo.stop:
            break
    if first_use:
        running = running * programme.first_use_pct / 100
        steps.append(Step("first_use", "", programme.first_use_pct, 0, _milli(running)))
    pct = programme.tiers.get(tier, 100)
    if pct != 100:
        running = running * pct / 100
        steps.append(Step("tier", tier, pct, 0, _milli(running)))
    return Earned(int(running // 1), tuple(steps))


# -- the compact form a signed configuration carries (contracts.signing: programs[].settings) -------------

def _day(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else ""


def _parse_day(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def programme_doc(programme: Programme, *, station: str | None = None, groups: Iterable[str] = (),
                  since: dt.date | None = None) -> dict[str, int | str]:
    """The programme as settings of the signed configuration's "loyalty" program: ints and one-line texts
    of at most 200 characters under keys [a-z][a-z0-9_]*. Given a station (and its groups), only the
    promotions for it are kept; given `since`, rules and promotions ended before it are left out.

    >>> doc = programme_doc(Programme(rules=(EarnRule("*", "volume", 1000),), tiers={"gold": 150}))
    >>> doc
    {'first_use_days': 30, 'first_use_pct': 300, 'tier_gold': 150, 'rule_0': '*|volume|1000||'}
    >>> programme_from_doc(doc) == Programme(rules=(EarnRule("*", "volume", 1000),), tiers={"gold": 150})
    True
    """
    doc: dict[str, int | str] = {"first_use_days": programme.first_use_days,
                                 "first_use_pct": programme.first_use_pct}
    for name, pct in sorted(programme.tiers.items()):
        doc[f"tier_{name}"] = pct
    kept = [r for r in programme.rules if since is None or r.ends_on is None or r.ends_on >= since]
    for n, r in enumerate(kept):
        doc[f"rule_{n}"] = "|".join((r.product, r.basis, str(r.milli_points), _day(r.starts_on),
                                     _day(r.ends_on)))
    facts = SaleFacts("", "", station or "", 0, 0, dt.date.min, tuple(groups))
    promos = [p for p in sorted(programme.promotions, key=lambda p: p.position)
              if (station is None or _station_match(p.stations, facts))
              and (since is None or p.ends_on is None or p.ends_on >= since)]
    for n, p in enumerate(promos):
        where = "" if station is not None else ",".join(p.stations)
        head = "|".join((str(p.position), p.product, where, _day(p.starts_on), _day(p.ends_on),
                         str(p.multiplier_pct), str(p.bonus_points), "1" if p.stop else "0"))
        if len(head) + 1 > _TEXT_MAX:
            raise MessageError("a promotion does not fit the configuration (too many stations)", field=p.name)
        name = "".join(c for c in p.name if c.isprintable())
        doc[f"promo_{n}"] = head + "|" + name[:_TEXT_MAX - len(head) - 1]
    if len(doc) > 32:       # contracts.signing CONFIG_BODY: at most 32 settings per program
        raise MessageError("the loyalty programme has too many rules and promotions for the configuration",
                           field="programs")
    return doc


def programme_from_doc(doc: Mapping[str, Any]) -> Programme:
    """The Programme of programme_doc's form; MessageError for anything else."""
    try:
        rules: list[tuple[int, EarnRule]] = []
        promos: list[tuple[int, Promotion]] = []
        tiers: dict[str, int] = {}
        for key, value in doc.items():
            if key.startswith("tier_") and isinstance(value, int):
                tiers[key[5:]] = value
            elif key.startswith("rule_") and isinstance(value, str):
                product, basis, milli, starts, ends = value.split("|")
                rules.append((int(key[5:]), EarnRule(product, basis, int(milli), _parse_day(starts),
                                                     _parse_day(ends))))
            elif key.startswith("promo_") and isinstance(value, str):
                pos, product, where, starts, ends, pct, bonus, stop, name = value.split("|", 8)
                promos.append((int(key[6:]), Promotion(
                    name, int(pos), product, tuple(x for x in where.split(",") if x), _parse_day(starts),
                    _parse_day(ends), int(pct), int(bonus), stop == "1")))
            elif key not in ("first_use_days", "first_use_pct") or not isinstance(value, int):
                raise MessageError("unknown loyalty setting", field=key)
        # rule order breaks ties between rules of one kind (rule_for), promotion order between promotions
        # at one position (the registry's: position, then id): both kept by the key's number, whatever
        # order the keys came in (a canonical JSON sorts them: "promo_10" before "promo_2")
        return Programme(tuple(r for _, r in sorted(rules, key=lambda x: x[0])),
                         tuple(p for _, p in sorted(promos, key=lambda x: x[0])),
                         int(doc["first_use_days"]), int(doc["first_use_pct"]), tiers)
    except (ValueError, KeyError) as exc:       # ConfigError is a ValueError: a bad value in the doc
        if isinstance(exc, MessageError):
            raise
        raise MessageError("loyalty settings malformed") from exc
