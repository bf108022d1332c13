"""Property test of the fleet ledger through authorization and settlement (issue 14, "Must also hold").

A hypothesis state machine drives one account with two wallets (litres prepaid for diesel, money post-paid
with a credit line for anything) and account and card limits through top-ups, authorizations on random
pumps, sales of up to what was allowed (registry.service.record_sale), authorizations left to expire,
reversed top-ups and the litre wallet's expiry, on a SQLite registry. A plain model kept beside it says what
each step must do; after every step the database must agree with it and the ledger must hold: every balance
is the sum of its movements, no limit is exceeded (usage recomputed from the stored sales), the prepaid
wallet never goes below zero, what is held is what live authorizations hold, and no sale delivers more than
its authorization allowed.

tests/test_fleet_concurrency_pg.py imports the seed and the request builders from here.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import messages as m
from contracts.panseal import derive_pan_key, seal_pan
from registry.db import open_database
from registry.fleet import ledger
from registry.fleet.cards import reissue
from registry.fleet.sweep import sweep
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import AuthAllowance, Authorization, Hold, Limit, Movement, Transaction, Usage, Wallet
from registry.seed import apply_seed
from registry.service import AUTH_TTL, MAX_FILL_CL, authorize, record_sale, record_sales

pytestmark = pytest.mark.slow

PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")
TERMINAL, STATION = "T-0001", "ST-001"
CARD_A, CARD_B = "7077001000000019", "7077001000000027"      # A with PIN 1234, B without
PINS = {CARD_A: "1234", CARD_B: ""}
TZ = "Europe/Berlin"
# naive UTC: 18:00 in Berlin on the last day of the ISO year's week 53; a few hours on, a new day, month
# and year start in the account's time zone while the week goes on
START = dt.datetime(2026, 12, 31, 17, 0)
LITRES, MONEY = 1, 2                                         # wallet ids
PRICES = {"diesel": 1659, "petrol95": 1789, "adblue": 899}
PUMPS = {1: {1: "diesel", 2: "petrol95"}, 2: {1: "diesel", 2: "adblue"}}
CREDIT = 200_00
WALLET1_EXPIRES = dt.date(2026, 12, 31)                      # usable through that day, Berlin time
LIMITS = [  # (scope, card number or None for the account, period, unit, maximum)
    ("account", None, "day", "volume", 200_00),
    ("account", None, "month", "money", 400_00),
    ("card", CARD_A, "sale", "volume", 60_00),
    ("card", CARD_B, "day", "count", 3),
    ("card", CARD_B, "week", "volume", 120_00),
    ("card", CARD_A, "lifetime", "money", 300_00),
    ("account", None, "week", "count", 12),
]


def amount_of(cl: int, milli: int) -> int:
    """What the pump charges for cl centilitres, half up (registry.checks.amount_matches)."""
    return (cl * milli + 500) // 1000


def cl_for(cents: int, milli: int) -> int:
    """The most centilitres whose amount_of stays within cents (an independent oracle, not rules)."""
    return max(0, (1000 * cents + 499) // milli)


def seed_doc(*, litres_cl: int = 150_00, money_cents: int = 50_00, limits: list[Any] | None = None,
             pumps: dict[int, dict[int, str]] | None = None, cards: tuple[str, ...] = (CARD_A, CARD_B),
             expires_on: dt.date | None = WALLET1_EXPIRES, money_wallet: bool = True) -> dict[str, Any]:
    """The registry's seed (registry.seed format with fleet accounts) for one account."""
    pumps = PUMPS if pumps is None else pumps
    numbers = {n: i + 1 for i, n in enumerate(cards)}
    wallets: list[dict[str, Any]] = [
        {"id": LITRES, "account": 1, "name": "diesel litres", "unit": "volume", "mode": "prepaid",
         "products": ["019"], "priority": 0, "topup": litres_cl,
         **({"expires_on": expires_on} if expires_on else {})}]
    if money_wallet:
        wallets.append({"id": MONEY, "account": 1, "name": "money", "unit": "money", "mode": "postpaid",
                        "credit": CREDIT, "products": [], "priority": 1, "topup": money_cents})
    return {
        "stations": [{"id": STATION, "name": "Test"}],
        "products": [{"code": "diesel", "name": "Diesel", "code3": "019"},
                     {"code": "petrol95", "name": "Unleaded 95", "code3": "001"},
                     {"code": "adblue", "name": "AdBlue", "code3": "062"}],
        "nozzles": [{"station": STATION, "pump": pump, "nozzle": nozzle, "product": product,
                     "price_milli": PRICES[product]}
                    for pump, nozzles in pumps.items() for nozzle, product in nozzles.items()],
        "devices": [{"id": TERMINAL, "station": STATION, "pin_key": PIN_KEY.hex()}],
        "customers": [{"id": 1, "name": "Haulage Ltd", "tax_id": "DE123"}],
        "accounts": [{"id": 1, "name": "Trucks", "customer": 1, "timezone": TZ}],
        "wallets": wallets,
        "cards": [{"pan": n, "account": 1, "expiry": "2912", **({"pin": PINS[n]} if PINS.get(n) else {})}
                  for n in cards],
        "limits": [{"scope": scope, "id": numbers[card] if card else 1, "period": period, "unit": unit,
                    "maximum": maximum} for scope, card, period, unit, maximum in
                   (LIMITS if limits is None else limits)],
    }


def auth_request(number: str, pump: int, *, pin: str = "") -> dict[str, Any]:
    """An AUTH_REQUEST as the terminal sends it, decoded as the registry reads it."""
    rid = str(uuid.uuid4())
    req = {"request_id": rid, "terminal": TERMINAL, "station": STATION, "pump": pump,
           "pan_sealed": seal_pan(derive_pan_key(PIN_KEY), number, request_id=rid, terminal=TERMINAL,
                                  station=STATION),
           "expiry": "2912",
           "pin_block": encipher_pinblock_iso_4(PIN_KEY, pin, number).hex().upper() if pin else "",
           "medium": "chip", "prompts": {}}
    return m.decode(m.encode(req, m.AUTH_REQUEST), m.AUTH_REQUEST)


def sale_doc(auth_id: str, pump: int, nozzle: int, product: str, volume_cl: int,
             finished: dt.datetime) -> dict[str, Any]:
    """The SALE a terminal sends for what the pump delivered on an authorization."""
    price = PRICES[product]
    doc = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": auth_id, "terminal": TERMINAL,
           "station": STATION, "pump": pump, "nozzle": nozzle, "product": product, "volume_cl": volume_cl,
           "amount_cents": amount_of(volume_cl, price), "price_milli": price,
           "card_masked": "707700******0019", "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
           "recovered": False, "flags": []}
    return m.decode(m.encode(doc, m.SALE), m.SALE)


def balance_sums(s: Session) -> dict[int, tuple[int, int]]:
    """Per wallet: (balance, sum of its movements), summed here, not by ledger.check."""
    sums = dict(s.execute(select(Movement.wallet_id, func.sum(Movement.amount)).group_by(Movement.wallet_id))
                .all())
    return {w.id: (w.balance, int(sums.get(w.id, 0))) for w in s.scalars(select(Wallet))}


def live_holds(s: Session, now: dt.datetime) -> dict[int, int]:
    rows = s.execute(select(Hold.wallet_id, func.sum(Hold.amount))
                     .where(Hold.released.is_(False), Hold.expires_at > now).group_by(Hold.wallet_id))
    return {wid: int(total) for wid, total in rows if total}


# -- the model ---------------------------------------------------------------------------------------------

def local(now: dt.datetime) -> dt.datetime:
    return now.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(TZ))


def period_of(period: str, when: dt.datetime) -> str:
    """A period's key of a local time, as the design names them (computed here, not by rules)."""
    year, week, _ = when.isocalendar()
    return {"day": when.strftime("D%Y-%m-%d"), "week": f"W{year}-{week:02d}",
            "month": when.strftime("M%Y-%m"), "year": when.strftime("Y%Y"), "lifetime": "L"}[period]


@dataclass
class ModelAuth:
    card: str
    pump: int
    expires_at: dt.datetime
    allowances: dict[int, tuple[str, int, int]]        # nozzle -> (product, volume_cl, amount_cents)
    payer: dict[str, int]                               # product -> wallet
    hold: dict[int, int]                                # wallet -> amount held
    done: bool = False

    @property
    def cl(self) -> int:
        return max(v for _, v, _ in self.allowances.values())

    @property
    def cents(self) -> int:
        return max(a for _, _, a in self.allowances.values())

    def live(self, now: dt.datetime) -> bool:
        return not self.done and now < self.expires_at


@dataclass
class Model:
    balance: dict[int, int]
    auths: dict[str, ModelAuth] = field(default_factory=dict)
    sales: list[tuple[str, dt.datetime, int, int]] = field(default_factory=list)   # card, finished, cents, cl

    def held(self, wallet: int, now: dt.datetime) -> int:
        return sum(a.hold.get(wallet, 0) for a in self.auths.values() if a.live(now))

    def available(self, wallet: int, now: dt.datetime) -> int:
        return self.balance[wallet] + (CREDIT if wallet == MONEY else 0) - self.held(wallet, now)

    def used(self, card: str | None, period: str, unit: str, now: dt.datetime) -> int:
        """Settled sales of the period holding now, plus what live authorizations may take."""
        if period == "sale":
            return 0
        key = period_of(period, local(now))
        pick = {"money": lambda c, cl: c, "volume": lambda c, cl: cl, "count": lambda c, cl: 1}[unit]
        settled = sum(pick(cents, cl) for who, at, cents, cl in self.sales
                      if (card is None or who == card) and period_of(period, local(at)) == key)
        live = [a for a in self.auths.values() if a.live(now) and (card is None or a.card == card)]
        return settled + sum(pick(a.cents, a.cl) for a in live)

    def remaining(self, card: str, now: dt.datetime) -> dict[str, int | None]:
        left: dict[str, int | None] = {"money": None, "volume": None, "count": None}
        for scope, who, period, unit, maximum in LIMITS:
            if scope == "card" and who != card:
                continue
            rest = max(0, maximum - self.used(who, period, unit, now))
            current = left[unit]
            left[unit] = rest if current is None else min(current, rest)
        return left

    def expect(self, card: str, pump: int, now: dt.datetime) -> tuple[dict[int, tuple[str, int, int]],
                                                                        dict[str, int]]:
        """Per nozzle what the authorization must allow, and which wallet pays each product."""
        left = self.remaining(card, now)
        allowances: dict[int, tuple[str, int, int]] = {}
        payer: dict[str, int] = {}
        for nozzle, product in sorted(PUMPS[pump].items()):
            price = PRICES[product]
            usable_litres = product == "diesel" and local(now).date() <= WALLET1_EXPIRES
            wallet = next((w for w in ([LITRES] if usable_litres else []) + [MONEY]
                           if self.available(w, now) > 0), None)
            if wallet is None:
                continue
            caps = [MAX_FILL_CL, self.available(wallet, now) if wallet == LITRES
                    else cl_for(self.available(wallet, now), price)]
            if left["volume"] is not None:
                caps.append(left["volume"])
            if left["money"] is not None:
                caps.append(cl_for(left["money"], price))
            if left["count"] is not None and left["count"] <= 0:
                caps.append(0)
            volume = min(caps)
            if volume > 0:
                allowances[nozzle] = (product, volume, amount_of(volume, price))
                payer.setdefault(product, wallet)
        return allowances, payer


# -- the machine -------------------------------------------------------------------------------------------

class FleetLedger(RuleBasedStateMachine):
    """One registry per example: a copy of a migrated, seeded SQLite file."""

    template: Path
    keys: RegistryKeys
    workdir: Path

    auths = Bundle("auths")
    topups = Bundle("topups")

    def __init__(self) -> None:
        super().__init__()
        path = self.workdir / f"{uuid.uuid4().hex}.db"
        shutil.copyfile(self.template, path)
        self.path = path
        self.engine, self.sessions = open_database(f"sqlite:///{path}")
        self.now = START
        self.model = Model(balance={LITRES: 150_00, MONEY: 50_00})
        self.expiries = 0
        self.sent: list[dict[str, Any]] = []
        self.sweeps, self.swept = 0, set[str]()

    def teardown(self) -> None:
        self.engine.dispose()
        for each in self.path.parent.glob(self.path.name + "*"):
            each.unlink()

    # -- rules ---------------------------------------------------------------------------------------------

    @rule(target=topups, wallet=st.sampled_from([LITRES, MONEY]), amount=st.integers(1, 80_00))
    def topup(self, wallet: int, amount: int) -> tuple[str, int, int]:
        key = f"topup:{uuid.uuid4()}"
        with self.sessions() as s:
            ledger.topup(s, s.get(Wallet, wallet), amount, key=key, at=self.now, actor="prop", reason="test")
            s.commit()
        self.model.balance[wallet] += amount
        return key, wallet, amount

    @rule(topup=topups, other=st.integers(1, 5))
    def topup_again(self, topup: tuple[str, int, int], other: int) -> None:
        """A top-up booked again under its key changes nothing; with another amount it is refused."""
        key, wallet, amount = topup
        with self.sessions() as s:
            before = s.scalar(select(func.count()).select_from(Movement))
            again = ledger.topup(s, s.get(Wallet, wallet), amount, key=key, at=self.now, actor="prop")
            assert again.key == key and again.amount == amount
            with pytest.raises(ledger.LedgerError):
                ledger.topup(s, s.get(Wallet, wallet), amount + other, key=key, at=self.now, actor="prop")
            s.commit()
            assert s.scalar(select(func.count()).select_from(Movement)) == before

    @rule(topup=consumes(topups))
    def reverse_topup(self, topup: tuple[str, int, int]) -> None:
        """A top-up is reversed once, unless that would take the wallet's available amount below zero."""
        key, wallet, amount = topup
        allowed = self.model.available(wallet, self.now) - amount >= 0
        event("reversal", "booked" if allowed else "refused")
        with self.sessions() as s:
            if allowed:
                ledger.reverse(s, key, at=self.now, actor="prop", reason="test")
                again = ledger.reverse(s, key, at=self.now, actor="prop", reason="test")
                assert again.amount == -amount
                s.commit()
            else:
                with pytest.raises(ledger.LedgerError):
                    ledger.reverse(s, key, at=self.now, actor="prop", reason="test")
                s.rollback()
        if allowed:
            self.model.balance[wallet] -= amount

    @rule(target=auths, card=st.sampled_from([CARD_A, CARD_B]), pump=st.sampled_from(sorted(PUMPS)))
    def authorize(self, card: str, pump: int) -> str:
        allowances, payer = self.model.expect(card, pump, self.now)
        with self.sessions() as s:
            answer = authorize(s, self.keys, auth_request(card, pump, pin=PINS[card]), self.now)
        got = {a.nozzle: (a.product, a.volume_cl, a.amount_cents) for a in answer.allowances}
        assert answer.approved == bool(allowances), (answer.reason, allowances)
        assert got == allowances
        event("authorization", answer.reason or "approved")
        for product, wallet in payer.items():
            event("pays", f"{product} from {'litres' if wallet == LITRES else 'money'}")
        if not answer.approved:
            return ""
        assert answer.auth_id is not None and answer.allowed_cl == max(v for _, v, _ in allowances.values())
        hold: dict[int, int] = {}
        for product, volume, cents in allowances.values():
            wallet = payer[product]
            hold[wallet] = max(hold.get(wallet, 0), volume if wallet == LITRES else cents)
        self.model.auths[answer.auth_id] = ModelAuth(card, pump, self.now + AUTH_TTL, allowances, payer, hold)
        return answer.auth_id

    @rule(auth_id=consumes(auths), data=st.data())
    def complete(self, auth_id: str, data: st.DataObject) -> None:
        self._complete(auth_id, data)

    @rule(auth_id=consumes(auths), data=st.data())
    def complete_another(self, auth_id: str, data: st.DataObject) -> None:     # sales as often as auths
        self._complete(auth_id, data)

    def _complete(self, auth_id: str, data: st.DataObject) -> None:
        """A sale of 0 up to the allowance of one of the pump's nozzles; a late one only releases."""
        auth = self.model.auths.get(auth_id)
        if auth is None:
            return                                        # declined: nothing to complete
        if not auth.live(self.now):
            event("sale", "release after expiry or completion")
            self._record(sale_doc(auth_id, auth.pump, 1, PUMPS[auth.pump][1], 0, self.now))
            auth.done = True
            return
        nozzle = data.draw(st.sampled_from(sorted(auth.allowances)), label="nozzle")
        product, most, _ = auth.allowances[nozzle]
        volume = data.draw(st.one_of(st.just(most), st.just(0), st.integers(0, most)), label="volume_cl")
        doc = sale_doc(auth_id, auth.pump, nozzle, product, volume, self.now)
        event("sale", "nothing" if not volume else "all" if volume == most else "part")
        self._record(doc)
        auth.done = True
        if volume:
            wallet = auth.payer[product]
            self.model.balance[wallet] -= volume if wallet == LITRES else doc["amount_cents"]
            self.model.sales.append((auth.card, self.now, doc["amount_cents"], volume))

    def _record(self, doc: dict[str, Any]) -> None:
        with self.sessions() as s:
            ack = record_sale(s, doc, self.now, self.keys)
        assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
        self.sent.append(doc)

    @precondition(lambda self: any(a.live(self.now) for a in self.model.auths.values()))
    @rule(data=st.data())
    def complete_in_a_batch(self, data: st.DataObject) -> None:
        """Sales of several live authorizations in one batch (registry.service.record_sales, as the ingest
        stores them), with a sale already stored sent again among them."""
        # in the order they were made: auth ids are random, an order by them would differ between runs
        live = [a for a, auth in self.model.auths.items() if auth.live(self.now)]
        chosen = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=3, unique=True),
                           label="auths")
        docs, again = [], None
        for auth_id in chosen:
            auth = self.model.auths[auth_id]
            nozzle = data.draw(st.sampled_from(sorted(auth.allowances)), label="nozzle")
            product, most, _ = auth.allowances[nozzle]
            volume = data.draw(st.one_of(st.just(most), st.integers(0, most)), label="volume_cl")
            docs.append(sale_doc(auth_id, auth.pump, nozzle, product, volume, self.now))
        if self.sent and data.draw(st.booleans(), label="resend"):
            again = data.draw(st.sampled_from(self.sent), label="again")
            docs.insert(data.draw(st.integers(0, len(docs)), label="at"), again)
        with self.sessions() as s:
            acks = record_sales(s, docs, self.now, self.keys)
        event("sale", f"batch of {len(docs)}")
        for doc, ack in zip(docs, acks, strict=True):
            assert ack == {"sale_id": doc["sale_id"], "status": "duplicate" if doc is again else "stored",
                           "reason": ""}
            if doc is again:
                continue
            self.sent.append(doc)
            auth = self.model.auths[doc["auth_id"]]
            auth.done = True
            if doc["volume_cl"]:
                wallet = auth.payer[doc["product"]]
                self.model.balance[wallet] -= doc["volume_cl"] if wallet == LITRES else doc["amount_cents"]
                self.model.sales.append((auth.card, self.now, doc["amount_cents"], doc["volume_cl"]))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """A terminal sends a stored sale again (its acknowledgement was lost): a duplicate, nothing moves."""
        doc = data.draw(st.sampled_from(self.sent), label="sale")
        with self.sessions() as s:
            ack = record_sale(s, doc, self.now, self.keys)
        assert ack == {"sale_id": doc["sale_id"], "status": "duplicate", "reason": ""}

    @rule(minutes=st.sampled_from([1, 4, 12]))
    def advance(self, minutes: int) -> None:
        self.now += dt.timedelta(minutes=minutes)

    @rule(hours=st.sampled_from([3, 7, 24 * 8]))
    def overnight(self, hours: int) -> None:
        """Into another day (and month and year: START is 18:00 local on 31 December), or week."""
        self.now += dt.timedelta(hours=hours)

    @rule()
    def let_authorizations_expire(self) -> None:
        self.now += AUTH_TTL + dt.timedelta(seconds=1)

    @precondition(lambda self: self.expiries < 3 and (self.expiries == 0
                                                     or local(self.now).date() > WALLET1_EXPIRES))
    @rule()
    def expire_wallet(self) -> None:
        """The litre wallet's left-over balance (less what live authorizations hold) once its day passed."""
        self.expiries += 1
        due = 0
        if local(self.now).date() > WALLET1_EXPIRES:
            due = max(0, self.model.balance[LITRES] - self.model.held(LITRES, self.now))
        with self.sessions() as s:
            done = ledger.expire(s, s.get(Wallet, LITRES), key=f"expiry:{self.expiries}", now=self.now,
                                 actor="prop")
            s.commit()
        assert (done.amount if done else 0) == -due
        event("wallet expiry", "booked" if due else "nothing due")
        self.model.balance[LITRES] -= due

    @precondition(lambda self: self.sweeps < 4)
    @rule()
    def hourly_sweep(self) -> None:
        """The registry's sweep (registry.fleet.sweep): the same expiry, once a (UTC) day per wallet."""
        self.sweeps += 1
        key = f"expiry:{LITRES}:{self.now:%Y-%m-%d}"
        due = 0
        if local(self.now).date() > WALLET1_EXPIRES and key not in self.swept:
            due = max(0, self.model.balance[LITRES] - self.model.held(LITRES, self.now))
        with self.sessions() as s:
            assert sweep(s, self.now) == (0, 1 if due else 0)
        if due:
            self.swept.add(key)
        event("sweep", "booked" if due else "nothing due")
        self.model.balance[LITRES] -= due

    # -- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def balances_are_their_movements(self) -> None:
        with self.sessions() as s:
            assert ledger.check(s) == []
            sums = balance_sums(s)
            running: dict[int, int] = {}
            for mv in s.scalars(select(Movement).order_by(Movement.id)):
                running[mv.wallet_id] = running.get(mv.wallet_id, 0) + mv.amount
                assert mv.balance_after == running[mv.wallet_id], mv.key
        assert sums == {w: (b, b) for w, b in self.model.balance.items()}
        assert self.model.balance[LITRES] >= 0              # prepaid, online sales only

    @invariant()
    def holds_are_the_live_authorizations(self) -> None:
        with self.sessions() as s:
            held = live_holds(s, self.now)
            released = set(s.scalars(select(Hold.auth_id).where(Hold.released.is_(True))))
        expected = {w: self.model.held(w, self.now) for w in (LITRES, MONEY)}
        assert held == {w: v for w, v in expected.items() if v}
        assert released == {a for a, auth in self.model.auths.items() if auth.done}
        for wallet in (LITRES, MONEY):
            assert self.model.available(wallet, self.now) >= 0

    @invariant()
    def no_limit_is_exceeded(self) -> None:
        with self.sessions() as s:
            sales = [(t.card_id, t.finished_at, t.amount_cents, t.volume_cl) for t in s.scalars(
                select(Transaction).where(Transaction.volume_cl > 0))]
            assert not s.scalar(select(func.count()).select_from(Transaction).where(Transaction.held))
            usage = {(u.scope, u.scope_id, u.period_key): (u.amount_cents, u.volume_cl, u.count)
                     for u in s.scalars(select(Usage))}
            limits = list(s.scalars(select(Limit)))
        cards = {1: CARD_A, 2: CARD_B}
        recomputed: dict[tuple[str, int, str], tuple[int, int, int]] = {}
        for card_id, finished, cents, cl in sales:
            for scope, scope_id in (("account", 1), ("card", card_id)):
                for period in ("day", "week", "month", "year", "lifetime"):
                    key = (scope, scope_id, period_of(period, local(finished)))
                    c, v, n = recomputed.get(key, (0, 0, 0))
                    recomputed[key] = (c + cents, v + cl, n + 1)
        assert {k: v for k, v in usage.items() if v != (0, 0, 0)} == recomputed
        unit_index = {"money": 0, "volume": 1, "count": 2}
        assert len(limits) == len(LIMITS)
        for lim in limits:
            card = None if lim.scope == "account" else cards[lim.scope_id]
            if lim.period != "sale":
                settled = recomputed.get((lim.scope, lim.scope_id, period_of(lim.period, local(self.now))),
                                         (0, 0, 0))[unit_index[lim.unit]]
                assert settled <= lim.maximum
            assert self.model.used(card, lim.period, lim.unit, self.now) <= lim.maximum
        for auth in self.model.auths.values():                          # the per-sale limit
            if auth.card == CARD_A:
                assert auth.cl <= 60_00

    @invariant()
    def no_sale_delivers_more_than_allowed(self) -> None:
        with self.sessions() as s:
            rows = s.execute(select(Transaction.auth_id, Transaction.product, Transaction.volume_cl,
                                    Transaction.amount_cents, AuthAllowance.volume_cl,
                                    AuthAllowance.amount_cents, Authorization.allowed_cl)
                             .join(AuthAllowance, (AuthAllowance.auth_id == Transaction.auth_id)
                                   & (AuthAllowance.product == Transaction.product))
                             .join(Authorization, Authorization.id == Transaction.auth_id)
                             .where(Transaction.volume_cl > 0)).all()
        assert len(rows) == len(self.model.sales)
        for auth_id, product, cl, cents, allowed_cl, allowed_cents, auth_cl in rows:
            nozzle_allowance = {p: (v, a) for p, v, a in self.model.auths[auth_id].allowances.values()}
            assert (allowed_cl, allowed_cents) == nozzle_allowance[product]
            assert cl <= allowed_cl <= auth_cl and cents <= allowed_cents


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RegistryKeys]:
    """A migrated SQLite registry seeded with the account: each example starts from a copy."""
    root = tmp_path_factory.mktemp("fleet-props")
    path = root / "template.db"
    engine, sessions = open_database(f"sqlite:///{path}")
    keys = load_or_create_keys(root / "keys" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, seed_doc(), START)
    engine.dispose()
    return path, keys


def test_the_model_starts_where_the_seed_does(registry_template: tuple[Path, RegistryKeys]) -> None:
    path, _ = registry_template
    engine, sessions = open_database(f"sqlite:///{path}")
    try:
        with sessions() as s:
            assert balance_sums(s) == {LITRES: (150_00, 150_00), MONEY: (50_00, 50_00)}
    finally:
        engine.dispose()


def test_fleet_ledger_properties(registry_template: tuple[Path, RegistryKeys], tmp_path: Path) -> None:
    template, keys = registry_template
    machine = type("Machine", (FleetLedger,), {"template": template, "keys": keys, "workdir": tmp_path})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=30, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))



def test_a_sale_reported_after_its_authorization_lapsed_is_booked_and_an_overdraw_flagged(
        tmp_path: Path) -> None:
    """The hold ends when the authorization lapses (AUTH_TTL), so its room may go to another pump; the
    first pump's sale, finished in time but reported late, is still booked: the fuel was taken. The prepaid
    wallet then goes below zero, which the sale that does it is flagged for ("overdrawn"), never lost."""
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    try:
        with sessions() as s:
            apply_seed(s, keys, seed_doc(litres_cl=30_00, money_wallet=False, expires_on=None, limits=[],
                                         pumps={1: {1: "diesel"}, 2: {1: "diesel"}}), START)
        with sessions() as s:
            first = authorize(s, keys, auth_request(CARD_B, 1), START)
        later = START + AUTH_TTL + dt.timedelta(minutes=1)
        with sessions() as s:
            second = authorize(s, keys, auth_request(CARD_B, 2), later)
        assert first.allowed_cl == second.allowed_cl == 30_00 and first.auth_id and second.auth_id
        late = sale_doc(first.auth_id, 1, 1, "diesel", 30_00, START + dt.timedelta(minutes=10))
        sale = sale_doc(second.auth_id, 2, 1, "diesel", 30_00, later + dt.timedelta(minutes=5))
        with sessions() as s:
            acks = [record_sale(s, doc, later + dt.timedelta(minutes=6), keys) for doc in (late, sale)]
            assert [a["status"] for a in acks] == ["stored", "stored"]
            assert ledger.check(s) == [] and balance_sums(s)[LITRES] == (-30_00, -30_00)
            flags = {t.sale_id: t.flags.split(",") for t in s.scalars(select(Transaction))}
        assert "overdrawn" not in flags[late["sale_id"]] and "overdrawn" in flags[sale["sale_id"]]
    finally:
        engine.dispose()


def test_a_reissued_card_keeps_to_the_limits_its_open_authorization_counts_in(tmp_path: Path) -> None:
    """Card B may take 120 L a week. It is authorized for 50 L, then reissued (damaged at the pump, say)
    while that authorization is open; the new card is authorized too and both pumps deliver in full. The
    card's week, carried over to the new card, must stay within its 120 L."""
    new_number = "7077001000000035"
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    try:
        with sessions() as s:
            apply_seed(s, keys, seed_doc(litres_cl=300_00, money_wallet=False, expires_on=None,
                                         limits=[("card", CARD_B, "week", "volume", 120_00),
                                                 ("card", CARD_B, "sale", "volume", 50_00)],
                                         pumps={1: {1: "diesel"}, 2: {1: "diesel"}}), START)
        with sessions() as s:
            first = authorize(s, keys, auth_request(CARD_B, 1), START)
        assert first.approved and first.auth_id and first.allowed_cl == 50_00
        with sessions() as s:
            issued = reissue(s, keys, 2, new_number, expiry="2912", pin=None, actor="test", reason="damaged",
                             now=START, activate=True)
            s.commit()
        sold = 50_00
        for _ in range(2):
            with sessions() as s:
                answer = authorize(s, keys, auth_request(new_number, 2), START)
            if not answer.approved:
                break
            assert answer.auth_id
            _sell(sessions, keys, answer.auth_id, 2, answer.allowed_cl)
            sold += answer.allowed_cl
        _sell(sessions, keys, first.auth_id, 1, 50_00)
        with sessions() as s:
            week = s.scalar(select(Usage.volume_cl).where(Usage.scope == "card", Usage.scope_id == issued.id,
                                                           Usage.period_key == "W2026-53"))
        assert sold <= 120_00 and (week or 0) <= 120_00
    finally:
        engine.dispose()


def _sell(sessions: Any, keys: RegistryKeys, auth_id: str, pump: int, volume: int) -> None:
    with sessions() as s:
        ack = record_sale(s, sale_doc(auth_id, pump, 1, "diesel", volume, START), START, keys)
    assert ack["reason"] == ""


def test_a_terminal_clock_behind_does_not_push_a_day_over_its_limit(tmp_path: Path) -> None:
    """The account's 200 L of a day are used; just after midnight (Berlin) a new day's authorization is
    granted. The terminal's clock is 5 minutes behind, so its sale says it finished on the old day: the old
    day must not count more than 200 L."""
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    midnight = dt.datetime(2026, 12, 31, 23, 0)            # 00:00 on 1 January in Berlin
    try:
        with sessions() as s:
            apply_seed(s, keys, seed_doc(litres_cl=500_00, money_wallet=False, expires_on=None,
                                         limits=[("account", None, "day", "volume", 200_00)],
                                         pumps={1: {1: "diesel"}}), START)
        now = midnight - dt.timedelta(hours=2)
        for expected in (MAX_FILL_CL, 200_00 - MAX_FILL_CL):
            with sessions() as s:
                answer = authorize(s, keys, auth_request(CARD_B, 1), now)
            assert answer.auth_id and answer.allowed_cl == expected
            with sessions() as s:
                doc = sale_doc(answer.auth_id, 1, 1, "diesel", expected, now)
                assert record_sale(s, doc, now, keys)["reason"] == ""
        now = midnight + dt.timedelta(minutes=1)
        with sessions() as s:
            answer = authorize(s, keys, auth_request(CARD_B, 1), now)
        assert answer.auth_id and answer.allowed_cl == MAX_FILL_CL
        with sessions() as s:
            doc = sale_doc(answer.auth_id, 1, 1, "diesel", 50_00, now - dt.timedelta(minutes=5))
            assert record_sale(s, doc, now + dt.timedelta(minutes=1), keys)["reason"] == ""
            days = dict(s.execute(select(Usage.period_key, Usage.volume_cl).where(
                Usage.scope == "account", Usage.period_key.like("D%"))).all())
        assert days["D2026-12-31"] <= 200_00, days
    finally:
        engine.dispose()
