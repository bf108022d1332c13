"""registry.fleet.ledger on a real database (registry.db.open_database, real migrations): balances are the
sum of their movements, keys are idempotent, holds reserve, and lock_account makes sessions take turns."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pg_env
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.db import open_database
from registry.fleet import ledger
from registry.fleet.ledger import LedgerError
from registry.models import Account, Authorization, Card, Customer, Device, Hold, Movement, Station, Wallet

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
TTL = dt.timedelta(minutes=10)

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


sm, any_sm = pg_env.sm, pg_env.any_sm      # sessions on SQLite; on SQLite and PostgreSQL in turn


# --- building rows ---------------------------------------------------------------------------------------

def make_account(sm: sessionmaker[Session], *wallets: dict[str, object],
                 tz: str = "UTC") -> tuple[int, list[int]]:
    """An account (in `tz`) with one wallet per dict of Wallet fields; (account id, wallet ids)."""
    with sm() as s:
        customer = Customer(name="Acme", kind="company", created_at=NOW)
        s.add(customer)
        s.flush()
        account = Account(name="Acme fleet", customer_id=customer.id, timezone=tz)
        s.add(account)
        s.flush()
        made = [Wallet(account_id=account.id, allowed_products="", **fields) for fields in wallets]
        s.add_all(made)
        s.commit()
        return account.id, [w.id for w in made]


def make_card(sm: sessionmaker[Session], account_id: int) -> int:
    with sm() as s:
        card = Card(token=uuid.uuid4().hex, masked="707700******0019", account_id=account_id, expiry="2912",
                    pin_verifier="", status="active")
        s.add(card)
        s.commit()
        return card.id


def make_authorization(s: Session, card_id: int, account_id: int, *, at: dt.datetime = NOW,
                       ttl: dt.timedelta = TTL, allowed_cl: int = 0, allowed_cents: int = 0) -> str:
    """An open authorization row (holds refer to one); its id."""
    if s.get(Device, "T-LEDGER") is None:
        if s.get(Station, "S-LEDGER") is None:
            s.add(Station(id="S-LEDGER", name="Ledger test"))
            s.flush()
        s.add(Device(id="T-LEDGER", station_id="S-LEDGER", pin_key_hex="00" * 16))
        s.flush()
    auth = Authorization(id=str(uuid.uuid4()), card_id=card_id, device_id="T-LEDGER", pump=1,
                         allowed_cl=allowed_cl, allowed_cents=allowed_cents, status="open", created_at=at,
                         expires_at=at + ttl, account_id=account_id)
    s.add(auth)
    s.flush()
    return auth.id


def wallet(s: Session, wallet_id: int) -> Wallet:
    found = s.get(Wallet, wallet_id)
    assert found is not None
    return found


def movements(s: Session, wallet_id: int) -> list[Movement]:
    return list(s.scalars(select(Movement).where(Movement.wallet_id == wallet_id).order_by(Movement.id)))


def chain_ok(s: Session, wallet_id: int) -> bool:
    """Each movement's balance_after is the one before plus its amount; the last is the wallet's balance."""
    balance = 0
    for each in movements(s, wallet_id):
        balance += each.amount
        if each.balance_after != balance:
            return False
    return balance == wallet(s, wallet_id).balance


PREPAID = {"unit": "money", "mode": "prepaid"}
POSTPAID = {"unit": "money", "mode": "postpaid", "credit_limit": 5000}
LITRES = {"unit": "volume", "mode": "prepaid"}


# --- post --------------------------------------------------------------------------------------------------

def test_post_keeps_the_balance_and_the_chain(sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as s:
        w = wallet(s, wid)
        first = ledger.post(s, w, "topup", 10_000, key="t1", at=NOW, actor="ops")
        second = ledger.post(s, w, "sale", -2_500, key="s1", at=NOW, sale_id="sale-1")
        s.commit()
    assert (first.balance_after, second.balance_after) == (10_000, 7_500)
    with sm() as s:
        assert wallet(s, wid).balance == 7_500
        assert chain_ok(s, wid)
        assert ledger.check(s) == []


def test_same_key_again_returns_the_movement_and_changes_nothing_across_sessions(
        sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as s:
        first = ledger.post(s, wallet(s, wid), "topup", 4_000, key="k", at=NOW)
        s.commit()
    with sm() as s:
        again = ledger.post(s, wallet(s, wid), "topup", 4_000, key="k", at=NOW + TTL)
        s.commit()
        assert again.id == first.id
        assert wallet(s, wid).balance == 4_000
        assert len(movements(s, wid)) == 1


@pytest.mark.parametrize("change", [{"amount": 4_001}, {"kind": "correction"}, {"other_wallet": True}])
def test_same_key_with_other_content_is_refused(sm: sessionmaker[Session], change: dict[str, object]) -> None:
    _, (wid, other) = make_account(sm, PREPAID, PREPAID)
    with sm() as s:
        ledger.post(s, wallet(s, wid), "topup", 4_000, key="k", at=NOW)
        s.commit()
    with sm() as s:
        target = wallet(s, other if change.get("other_wallet") else wid)
        kind = str(change.get("kind", "topup"))
        amount = int(str(change.get("amount", 4_000)))
        with pytest.raises(LedgerError, match="already booked"):
            ledger.post(s, target, kind, amount, key="k", at=NOW)
        assert wallet(s, wid).balance == 4_000


def test_post_refuses_an_unknown_kind_a_bad_key_and_a_bad_amount(sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as s:
        w = wallet(s, wid)
        with pytest.raises(LedgerError, match="kind"):
            ledger.post(s, w, "gift", 1, key="a", at=NOW)
        for key in ("", "x" * 101):
            with pytest.raises(LedgerError, match="key"):
                ledger.post(s, w, "topup", 1, key=key, at=NOW)
        with pytest.raises(LedgerError, match="whole number"):
            ledger.post(s, w, "topup", 1.5, key="a", at=NOW)        # type: ignore[arg-type]
        with pytest.raises(LedgerError, match="out of range"):     # PostgreSQL's BIGINT would overflow
            ledger.post(s, w, "topup", -(2**63), key="a", at=NOW)
        with pytest.raises(LedgerError, match="no such wallet"):
            ledger.post(s, Wallet(id=wid + 1000, account_id=w.account_id), "topup", 1, key="a", at=NOW)
        assert movements(s, wid) == []


def test_post_books_a_sale_that_overdraws_a_prepaid_wallet(sm: sessionmaker[Session]) -> None:
    """A sale that happened (offline, or beyond its hold) is booked, never lost; the overdraft shows."""
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as s:
        w = wallet(s, wid)
        ledger.post(s, w, "topup", 1_000, key="t", at=NOW)
        ledger.post(s, w, "sale", -1_500, key="offline-sale", at=NOW)
        s.commit()
        assert w.balance == -500
        assert ledger.available(s, w, NOW) == -500


def test_post_reads_the_balance_from_the_database_not_a_stale_object(sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as stale_session:
        stale = wallet(stale_session, wid)          # balance 0 loaded here
        with sm() as s:
            ledger.post(s, wallet(s, wid), "topup", 700, key="a", at=NOW)
            s.commit()
        booked = ledger.post(stale_session, stale, "topup", 300, key="b", at=NOW)
        stale_session.commit()
        assert booked.balance_after == stale.balance == 1_000
    with sm() as s:
        assert ledger.check(s) == [] and chain_ok(s, wid)


def test_check_names_a_wallet_whose_balance_is_not_its_movements(sm: sessionmaker[Session]) -> None:
    _, (wid, empty) = make_account(sm, PREPAID, PREPAID)
    with sm() as s:
        ledger.post(s, wallet(s, wid), "topup", 100, key="t", at=NOW)
        wallet(s, wid).balance = 150                 # what only a bug or a hand edit would do
        wallet(s, empty).balance = 7
        s.commit()
        assert ledger.check(s) == [(wid, 150, 100), (empty, 7, 0)]


# --- holds and available ------------------------------------------------------------------------------------

def test_holds_reserve_until_released_or_expired(sm: sessionmaker[Session]) -> None:
    account_id, (prepaid, postpaid) = make_account(sm, PREPAID, POSTPAID)
    card = make_card(sm, account_id)
    with sm() as s:
        ledger.topup(s, wallet(s, prepaid), 10_000, key="t", at=NOW, actor="ops")
        a1 = make_authorization(s, card, account_id)
        a2 = make_authorization(s, card, account_id, ttl=dt.timedelta(minutes=1))
        ledger.hold(s, a1, prepaid, 6_000, NOW + TTL, now=NOW)
        ledger.hold(s, a2, prepaid, 3_000, NOW + dt.timedelta(minutes=1), now=NOW)
        ledger.hold(s, a1, postpaid, 5_000, NOW + TTL, now=NOW)
        s.commit()
        assert ledger.available(s, wallet(s, prepaid), NOW) == 1_000
        assert ledger.available(s, wallet(s, postpaid), NOW) == 0          # its whole credit line held
        assert ledger.available(s, wallet(s, prepaid), NOW + dt.timedelta(minutes=2)) == 4_000   # a2 expired
        with pytest.raises(LedgerError, match="not enough"):
            ledger.hold(s, make_authorization(s, card, account_id), prepaid, 1_001, NOW + TTL, now=NOW)
        assert ledger.release(s, a1) == 2
        assert ledger.release(s, a1) == 0
        s.commit()
        assert ledger.available(s, wallet(s, prepaid), NOW) == 7_000
        assert len(list(s.scalars(select(Hold).where(Hold.auth_id == a1)))) == 2    # kept, marked released


def test_the_same_hold_again_is_one_hold(sm: sessionmaker[Session]) -> None:
    account_id, (wid,) = make_account(sm, PREPAID)
    card = make_card(sm, account_id)
    with sm() as s:
        ledger.topup(s, wallet(s, wid), 1_000, key="t", at=NOW, actor="ops")
        auth = make_authorization(s, card, account_id)
        ledger.hold(s, auth, wid, 800, NOW + TTL, now=NOW)
        ledger.hold(s, auth, wid, 800, NOW + TTL, now=NOW)
        with pytest.raises(LedgerError, match="another amount"):
            ledger.hold(s, auth, wid, 900, NOW + TTL)
        with pytest.raises(LedgerError, match="above zero"):
            ledger.hold(s, auth, wid, 0, NOW + TTL)
        assert ledger.open_holds(s, wid, NOW) == 800


# --- helpers that check what they book ----------------------------------------------------------------------

def test_topup_refuses_nothing_and_a_closed_wallet(sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, {**PREPAID, "status": "closed"})
    with sm() as s:
        with pytest.raises(LedgerError, match="above zero"):
            ledger.topup(s, wallet(s, wid), 0, key="t0", at=NOW, actor="ops")
        with pytest.raises(LedgerError, match="closed"):
            ledger.topup(s, wallet(s, wid), 100, key="t1", at=NOW, actor="ops")


def test_correction_may_not_take_available_below_zero(sm: sessionmaker[Session]) -> None:
    _, (prepaid, postpaid) = make_account(sm, PREPAID, POSTPAID)
    with sm() as s:
        ledger.topup(s, wallet(s, prepaid), 1_000, key="t", at=NOW, actor="ops")
        with pytest.raises(LedgerError, match="not enough"):
            ledger.correct(s, wallet(s, prepaid), -1_001, key="c1", at=NOW, actor="ops", reason="typo")
        ledger.correct(s, wallet(s, prepaid), -1_000, key="c2", at=NOW, actor="ops", reason="typo")
        ledger.correct(s, wallet(s, postpaid), -5_000, key="c3", at=NOW, actor="ops", reason="fee")
        with pytest.raises(LedgerError, match="not enough"):
            ledger.correct(s, wallet(s, postpaid), -1, key="c4", at=NOW, actor="ops", reason="fee")
        with pytest.raises(LedgerError, match="change"):
            ledger.correct(s, wallet(s, prepaid), 0, key="c5", at=NOW, actor="ops", reason="none")
        s.commit()
        assert (wallet(s, prepaid).balance, wallet(s, postpaid).balance) == (0, -5_000)


def test_transfer_books_two_movements_once_and_checks_units_and_funds(sm: sessionmaker[Session]) -> None:
    account_id, (a, b, litres, credit) = make_account(sm, PREPAID, PREPAID, LITRES, POSTPAID)
    card = make_card(sm, account_id)
    with sm() as s:
        ledger.topup(s, wallet(s, a), 5_000, key="t", at=NOW, actor="ops")
        ledger.hold(s, make_authorization(s, card, account_id), a, 1_000, NOW + TTL, now=NOW)
        with pytest.raises(LedgerError, match="not enough funds"):
            ledger.transfer(s, wallet(s, a), wallet(s, b), 4_001, key="x", at=NOW, actor="ops")
        out, into = ledger.transfer(s, wallet(s, a), wallet(s, b), 4_000, key="x", at=NOW, actor="ops")
        again = ledger.transfer(s, wallet(s, a), wallet(s, b), 4_000, key="x", at=NOW, actor="ops")
        assert (out.key, into.key, out.amount, into.amount) == ("x:out", "x:in", -4_000, 4_000)
        assert again == (out, into)
        with pytest.raises(LedgerError, match="units"):
            ledger.transfer(s, wallet(s, b), wallet(s, litres), 1, key="y", at=NOW, actor="ops")
        with pytest.raises(LedgerError, match="itself"):
            ledger.transfer(s, wallet(s, b), wallet(s, b), 1, key="z", at=NOW, actor="ops")
        with pytest.raises(LedgerError, match="not enough funds"):       # a credit line is not funds
            ledger.transfer(s, wallet(s, credit), wallet(s, b), 1, key="w", at=NOW, actor="ops")
        s.commit()
        assert [wallet(s, w).balance for w in (a, b)] == [1_000, 4_000]
        assert ledger.check(s) == []


def test_expire_takes_a_prepaid_balance_after_its_last_day_in_the_account_zone(
        sm: sessionmaker[Session]) -> None:
    # Europe/Berlin: 2026-12-01 23:30 UTC is already 2 December there
    last_day = dt.date(2026, 12, 1)
    account_id, (wid, postpaid) = make_account(sm, {**PREPAID, "expires_on": last_day},
                                               {**POSTPAID, "expires_on": last_day}, tz="Europe/Berlin")
    card = make_card(sm, account_id)
    late = dt.datetime(2026, 12, 1, 22, 30)
    with sm() as s:
        w = wallet(s, wid)
        ledger.topup(s, w, 3_000, key="t", at=NOW, actor="ops")
        auth = make_authorization(s, card, account_id, at=late, ttl=dt.timedelta(hours=1))
        ledger.hold(s, auth, wid, 500, late + dt.timedelta(hours=1), now=late)
        assert ledger.expire(s, w, key="e0", now=dt.datetime(2026, 12, 1, 22, 59)) is None   # 23:59 there
        gone = ledger.expire(s, w, key="e1", now=late + dt.timedelta(minutes=31))           # 00:01 there
        assert gone is not None and gone.amount == -2_500 and gone.kind == "expiry"
        assert ledger.expire(s, w, key="e1", now=late + dt.timedelta(hours=5)) == gone
        assert ledger.expire(s, w, key="e2", now=late + dt.timedelta(minutes=40)) is None    # only held left
        assert ledger.expire(s, wallet(s, postpaid), key="e3", now=late + dt.timedelta(days=2)) is None
        rest = ledger.expire(s, w, key="e4", now=late + dt.timedelta(hours=2))             # the hold ended
        assert rest is not None and rest.amount == -500
        s.commit()
        assert w.balance == 0 and ledger.check(s) == []


def test_reverse_books_the_opposite_once(sm: sessionmaker[Session]) -> None:
    _, (wid,) = make_account(sm, PREPAID)
    with sm() as s:
        w = wallet(s, wid)
        ledger.topup(s, w, 2_000, key="t", at=NOW, actor="ops")
        ledger.post(s, w, "sale", -700, key="sale:1", at=NOW, sale_id="1")
        back = ledger.reverse(s, "sale:1", at=NOW, actor="ops", reason="pump fault")
        assert ledger.reverse(s, "sale:1", at=NOW, actor="ops") == back
        assert (back.key, back.amount, back.sale_id, back.kind) == ("reversal:sale:1", 700, "1", "reversal")
        with pytest.raises(LedgerError, match="not reversed"):
            ledger.reverse(s, "reversal:sale:1", at=NOW, actor="ops")
        with pytest.raises(LedgerError, match="no movement"):
            ledger.reverse(s, "nothing", at=NOW, actor="ops")
        ledger.post(s, w, "sale", -1_500, key="sale:2", at=NOW)
        with pytest.raises(LedgerError, match="not enough"):         # the top-up is spent
            ledger.reverse(s, "t", at=NOW, actor="ops")
        s.commit()
        assert w.balance == 500 and chain_ok(s, wid)


# --- lock_account and concurrent keys (SQLite and PostgreSQL) --------------------------------------------

def test_lock_account_bumps_its_sequence_and_refuses_an_unknown_account(sm: sessionmaker[Session]) -> None:
    account_id, _ = make_account(sm)
    with sm() as s:
        assert ledger.lock_account(s, account_id).auth_seq == 1
        s.commit()
    with sm() as s:
        assert ledger.lock_account(s, account_id).auth_seq == 2
        with pytest.raises(LedgerError, match="no such account"):
            ledger.lock_account(s, account_id + 1000)


def test_two_sessions_locking_one_account_take_turns(any_sm: sessionmaker[Session]) -> None:
    """The second lock_account waits until the first session commits, then reads its sequence."""
    account_id, _ = make_account(any_sm)
    got: list[int] = []
    started = threading.Event()

    def second() -> None:
        with any_sm() as s:
            started.set()
            got.append(ledger.lock_account(s, account_id).auth_seq)
            s.commit()

    with any_sm() as first:
        seq = ledger.lock_account(first, account_id).auth_seq
        thread = threading.Thread(target=second)
        thread.start()
        assert started.wait(10)
        thread.join(1.0)
        assert thread.is_alive() and got == []          # blocked by the first session's lock
        first.commit()
    thread.join(10)
    assert got == [seq + 1]


def test_a_key_booked_meanwhile_fails_at_the_second_insert_and_a_retry_finds_it(
        any_sm: sessionmaker[Session]) -> None:
    """Both sessions find no movement under the key; the unique index refuses the second; its retry
    (after a rollback) returns the first one's movement and the balance counts it once."""
    _, (wid,) = make_account(any_sm, PREPAID)
    key = f"race-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def second() -> None:
        with any_sm() as s:
            try:
                ledger.post(s, wallet(s, wid), "topup", 900, key=key, at=NOW)
                s.commit()
            except IntegrityError as exc:
                errors.append(exc)
                s.rollback()
                ledger.post(s, wallet(s, wid), "topup", 900, key=key, at=NOW)
                s.commit()

    with any_sm() as first:
        booked = ledger.post(first, wallet(first, wid), "topup", 900, key=key, at=NOW)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(1.0)                  # it waits on the first session's lock, after finding no key
        first.commit()
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1
    with any_sm() as s:
        assert [m.id for m in movements(s, wid)] == [booked.id]
        assert wallet(s, wid).balance == 900 and ledger.check(s) == []


# --- any sequence of ledger steps (hypothesis) -----------------------------------------------------------

WALLETS = ({**PREPAID, "expires_on": dt.date(2026, 12, 2)}, PREPAID, POSTPAID, LITRES)
MONEY = st.integers(1, 6_000)
STEPS = st.one_of(
    st.tuples(st.just("topup"), st.integers(0, 3), MONEY),
    st.tuples(st.just("correct"), st.integers(0, 3), st.integers(-6_000, 6_000).filter(bool)),
    st.tuples(st.just("transfer"), st.integers(0, 3), st.integers(0, 3), MONEY),
    st.tuples(st.just("hold"), st.integers(0, 3), MONEY),
    st.tuples(st.just("settle"), st.integers(0, 99), st.integers(0, 100)),
    st.tuples(st.just("release"), st.integers(0, 99)),
    st.tuples(st.just("advance"), st.integers(1, 48 * 60)),
    st.tuples(st.just("expire"), st.integers(0, 3)),
    st.tuples(st.just("reverse"), st.integers(0, 999)),
    st.tuples(st.just("replay"), st.integers(0, 999)),
)
Step = tuple[Any, ...]


@pytest.fixture(scope="module")
def shared_sm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'registry.db'}")
    yield made
    engine.dispose()


class Run:
    """One sequence on a fresh account of a shared database: applies steps, remembers what it booked."""

    def __init__(self, sm: sessionmaker[Session]) -> None:
        self.sm = sm
        self.account, self.wallets = make_account(sm, *WALLETS, tz="Europe/Berlin")
        self.card = make_card(sm, self.account)
        self.prefix = uuid.uuid4().hex[:8]
        self.now = NOW
        self.n = 0
        self.holds: list[tuple[str, int, int, dt.datetime]] = []     # auth, wallet, amount, expires
        self.keys: list[str] = []                                    # movements booked
        self.done: list[Step] = []                                   # steps that booked, to replay

    def key(self) -> str:
        self.n += 1
        return f"{self.prefix}:{self.n}"

    def apply(self, s: Session, step: Step) -> Step | None:
        """Run one step; the step with its keys fixed (to replay it), or None when it booked nothing.
        A replayed step carries its key (or authorization) as its last item."""
        name, *args = step
        w = [wallet(s, wid) for wid in self.wallets]
        at, booked = self.now, self.keys
        if name == "advance":
            self.now += dt.timedelta(minutes=args[0])
        elif name == "topup":
            key = args[2] if len(args) > 2 else self.key()
            booked.append(ledger.topup(s, w[args[0]], args[1], key=key, at=at, actor="ops").key)
            return ("topup", args[0], args[1], key)
        elif name == "correct":
            key = args[2] if len(args) > 2 else self.key()
            booked.append(ledger.correct(s, w[args[0]], args[1], key=key, at=at, actor="ops", reason="r").key)
            return ("correct", args[0], args[1], key)
        elif name == "transfer":
            key = args[3] if len(args) > 3 else self.key()
            pair = ledger.transfer(s, w[args[0]], w[args[1]], args[2], key=key, at=at, actor="ops")
            booked.extend(m.key for m in pair)
            return ("transfer", args[0], args[1], args[2], key)
        elif name == "hold":
            wid = self.wallets[args[0]]
            if len(args) > 2:
                ledger.hold(s, args[2], wid, args[1], at + TTL, now=at)
                return None
            auth = make_authorization(s, self.card, self.account, at=at)
            ledger.hold(s, auth, wid, args[1], at + TTL, now=at)
            self.holds.append((auth, wid, args[1], at + TTL))
            return ("hold", args[0], args[1], auth)
        elif name == "settle" and self.holds:
            auth, wid, held, expires = self.holds.pop(args[0] % len(self.holds))
            taken = held * args[1] // 100
            if expires > at and taken:      # a sale within its open hold: what it reserved pays for it
                booked.append(ledger.post(s, wallet(s, wid), "sale", -taken, key=f"{self.prefix}:sale:{auth}",
                                          at=at, auth_id=auth).key)
            ledger.release(s, auth)
        elif name == "release" and self.holds:
            ledger.release(s, self.holds.pop(args[0] % len(self.holds))[0])
        elif name == "expire":
            key = args[1] if len(args) > 1 else self.key()
            gone = ledger.expire(s, w[args[0]], key=key, now=at)
            if gone is not None:
                booked.append(gone.key)
                return ("expire", args[0], key)
        elif name == "reverse" and self.keys:
            original = args[0] if isinstance(args[0], str) else self.keys[args[0] % len(self.keys)]
            booked.append(ledger.reverse(s, original, at=at, actor="ops").key)
            return ("reverse", original)
        return None

    def state(self, s: Session) -> tuple[list[int], int, list[int]]:
        count = len(list(s.scalars(select(Movement.id).where(Movement.wallet_id.in_(self.wallets)))))
        holds = [ledger.open_holds(s, wid, self.now) for wid in self.wallets]
        return [wallet(s, wid).balance for wid in self.wallets], count, holds

    def check(self, s: Session) -> None:
        assert [row for row in ledger.check(s) if row[0] in self.wallets] == []
        for wid in self.wallets:
            assert chain_ok(s, wid)
            assert ledger.available(s, wallet(s, wid), self.now) >= 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEPS, min_size=10, max_size=50))
def test_any_sequence_keeps_balances_equal_to_movements(shared_sm: sessionmaker[Session],
                                                        steps: list[Step]) -> None:
    """After every step, in its own session: each balance is the sum of its movements, the balance_after
    chain holds, no wallet's available amount is below zero, and replaying a booked step changes nothing."""
    run = Run(shared_sm)
    for step in [("topup", i, 10_000) for i in range(len(WALLETS))] + steps:
        with shared_sm() as s:
            replay = step[0] == "replay"
            if replay and not run.done:
                continue
            before, keys = run.state(s), list(run.keys)
            try:
                fixed = run.apply(s, run.done[step[1] % len(run.done)] if replay else step)
                s.commit()
                if fixed is not None and not replay:
                    run.done.append(fixed)
            except LedgerError:
                s.rollback()
            if replay:
                run.keys = keys
                assert run.state(s) == before
            run.check(s)
    event(f"movements booked: {min(len(run.keys) // 10 * 10, 30)}+")
