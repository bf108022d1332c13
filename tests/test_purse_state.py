"""The purse's rules and memory (hostsim/cards/purse_state.py): real keys and MACs, no APDUs."""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.purse_apdu import (
    CompleteRequest,
    InitLoadRequest,
    LoadRequest,
    ReserveRequest,
    ScriptRequest,
    SettleRequest,
)
from contracts.purse_keys import (
    AdminOp,
    Purpose,
    Unit,
    admin_message,
    derive_card_key,
    init_load_message,
    load_message,
    mac,
    verify_mac,
)
from contracts.purse_records import Kind, PurchaseRecord, open_signed
from contracts.purse_wallets import Refusal, Status, Wallet
from hostsim.cards.purse_state import (
    GRACE_SECONDS,
    CardTorn,
    Cmd,
    PurseKeys,
    PurseRefused,
    PurseState,
    Stored,
    Tear,
)

CARD = bytes.fromhex("7077000000000019")
SAM_A = bytes.fromhex("5A4D000000000001")
SAM_B = bytes.fromhex("5A4D000000000002")
T0 = 1_800_000_000                # 2027-01-15 08:00 UTC
DAY = 86_400
PIN = "4321"
MASTERS = {p: os.urandom(16) for p in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN)}


def card_key(purpose: Purpose, version: int = 1) -> bytes:
    return derive_card_key(MASTERS[purpose], CARD, purpose, version=version)


def wallets() -> tuple[Wallet, ...]:
    return (Wallet(number=0, unit=Unit.MONEY, balance=10_000, products=((1, 99),), expiry=20281231,
                   day_limit=8_000, month_limit=20_000),
            Wallet(number=1, unit=Unit.VOLUME, balance=5_000, products=((19, 19),), expiry=20270131))


def new_state(**stored: object) -> PurseState:
    keys = PurseKeys(CARD, {(p, 1): card_key(p) for p in MASTERS}, PIN)
    return PurseState(keys, dataclasses.replace(Stored.fresh(wallets()), **stored))  # type: ignore[arg-type]


def ready(state: PurseState, sam: bytes = SAM_A, time: int = T0) -> PurseState:
    state.begin_session(sam, time)
    state.verify_pin(PIN)
    return state


def refusal(call: object, *args: object) -> Refusal:
    with pytest.raises(PurseRefused) as info:
        call(*args)  # type: ignore[operator]
    return info.value.refusal


def ask(wallet: int = 0, amount: int = 6_000, product: int = 19, time: int = T0) -> ReserveRequest:
    return ReserveRequest(wallet=wallet, product=product, max_amount=amount, time=time,
                          sale_id=os.urandom(16))


def load_req(state: PurseState, amount: int, *, wallet: int = 0, counter: int | None = None) -> LoadRequest:
    load_id = os.urandom(16)
    unit = state.stored.wallets[wallet].unit
    message = load_message(CARD, key_version=1, wallet=wallet, amount=amount, unit=unit, load_id=load_id,
                           counter=state.stored.counter if counter is None else counter)
    return LoadRequest(key_version=1, wallet=wallet, amount=amount, load_id=load_id,
                       mac=mac(card_key(Purpose.LOAD), message))


def script(state: PurseState, op: AdminOp, payload: bytes = b"", *, counter: int | None = None,
           key: bytes | None = None) -> ScriptRequest:
    message = admin_message(CARD, key_version=1, op=op, payload=payload,
                            counter=state.stored.counter if counter is None else counter)
    return ScriptRequest(message=message, mac=mac(key or card_key(Purpose.ADMIN), message))


def opened(signed: bytes) -> PurchaseRecord:
    return open_signed(card_key(Purpose.RECORD), signed)


def test_reserve_then_settle_debits_once_and_signs() -> None:
    state = ready(new_state())
    answer = state.reserve(ask(amount=6_000))
    assert (answer.reserved, answer.counter, state.stored.counter) == (6_000, 1, 1)
    assert state.stored.pending is not None and state.stored.pending.sam_id == SAM_A
    assert state.stored.wallets[0].balance == 10_000               # nothing debited yet
    record = opened(state.settle(SettleRequest(counter=1, final_amount=4_250)))
    assert (record.kind, record.counter, record.amount, record.terminal) == (Kind.PURCHASE, 1, 4_250, SAM_A)
    assert (record.previous_balance, record.new_balance, record.time) == (10_000, 5_750, T0)
    w = state.stored.wallets[0]
    assert (w.balance, w.day_used, w.day, w.month_used, w.month) == (5_750, 4_250, 20270115, 4_250, 202701)
    assert state.stored.pending is None and state.log_entry(1) is not None
    assert refusal(state.settle, SettleRequest(counter=1, final_amount=1)) is Refusal.NO_PENDING


def test_reserve_takes_what_fits_balance_day_and_month() -> None:
    state = ready(new_state())
    assert state.reserve(ask(amount=50_000)).reserved == 8_000      # the day limit binds
    state.settle(SettleRequest(counter=1, final_amount=8_000))
    assert refusal(state.reserve, ask()) is Refusal.DAY_LIMIT
    assert state.stored.counter == 1                                 # a refusal writes nothing
    later = ready(state, time=T0 + DAY)
    assert later.reserve(ask(amount=50_000, time=T0 + DAY)).reserved == 2_000   # the balance binds
    state.settle(SettleRequest(counter=2, final_amount=2_000))
    assert refusal(state.reserve, ask(time=T0 + DAY)) is Refusal.BALANCE


def test_month_limit_binds_and_restarts_next_month() -> None:
    w0 = dataclasses.replace(wallets()[0], balance=100_000, day_limit=0, month_limit=9_000)
    state = ready(new_state(wallets=(w0,)))
    state.reserve(ask(amount=9_000))
    state.settle(SettleRequest(counter=1, final_amount=9_000))
    ready(state, time=T0 + DAY)
    assert refusal(state.reserve, ask(time=T0 + DAY)) is Refusal.MONTH_LIMIT
    ready(state, time=T0 + 20 * DAY)                                  # 4 February
    assert state.reserve(ask(amount=50_000, time=T0 + 20 * DAY)).reserved == 9_000


def test_reserve_refusals() -> None:
    state = new_state()
    assert refusal(state.reserve, ask()) is Refusal.SECURITY        # no session
    state.begin_session(SAM_A, T0)
    assert refusal(state.reserve, ask()) is Refusal.SECURITY        # no PIN
    state.verify_pin(PIN)
    assert refusal(state.reserve, ask(product=400)) is Refusal.PRODUCT
    assert refusal(state.reserve, ask(wallet=5)) is Refusal.NOT_FOUND
    assert refusal(state.reserve, ask(time=T0 - 1)) is Refusal.TIME
    ready(state, time=T0 + 30 * DAY)
    assert refusal(state.reserve, ask(wallet=1, time=T0 + 30 * DAY)) is Refusal.EXPIRED
    state.reserve(ask(time=T0 + 30 * DAY))
    assert refusal(state.reserve, ask(time=T0 + 30 * DAY)) is Refusal.PENDING
    blocked = ready(new_state(status=Status.BLOCKED))
    assert refusal(blocked.reserve, ask()) is Refusal.BLOCKED
    assert refusal(ready(new_state(counter=2**32 - 1)).reserve, ask()) is Refusal.COUNTER
    assert refusal(new_state(last_time=T0 + 1).begin_session, SAM_A, T0) is Refusal.TIME


def test_settle_rules() -> None:
    state = ready(new_state())
    state.reserve(ask(amount=3_000))
    assert refusal(state.settle, SettleRequest(counter=1, final_amount=3_001)) is Refusal.ABOVE_RESERVE
    assert refusal(state.settle, SettleRequest(counter=7, final_amount=1)) is Refusal.NO_PENDING
    ready(state)                                                     # another session: COMPLETE PENDING's job
    assert refusal(state.settle, SettleRequest(counter=1, final_amount=1)) is Refusal.CONDITIONS
    record = opened(state.complete(CompleteRequest(counter=1, final_amount=0)))
    assert (record.kind, record.amount, state.stored.wallets[0].balance) == (Kind.RECOVERED, 0, 10_000)


def test_pin_tries_count_before_the_comparison() -> None:
    state = new_state()
    state.begin_session(SAM_A, T0)
    for left in (2, 1):
        with pytest.raises(PurseRefused) as info:
            state.verify_pin("0000")
        assert (info.value.refusal, info.value.sw) == (Refusal.WRONG_PIN, bytes([0x63, 0xC0 | left]))
    state.verify_pin(PIN)
    assert state.stored.pin_tries == 3 and state.session is not None and state.session.pin_verified
    state.tear_at(Cmd.VERIFY, Tear.AFTER_COMMIT)                     # pulled after the try was counted
    with pytest.raises(CardTorn):
        state.verify_pin(PIN)
    assert state.stored.pin_tries == 2 and state.session is None
    state.begin_session(SAM_A, T0)
    state.tear_at(Cmd.VERIFY, Tear.BEFORE_COMMIT)
    with pytest.raises(CardTorn):
        state.verify_pin("0000")
    assert state.stored.pin_tries == 2
    state.begin_session(SAM_A, T0)
    for _ in range(2):
        with pytest.raises(PurseRefused):
            state.verify_pin("0000")
    assert refusal(state.verify_pin, PIN) is Refusal.PIN_BLOCKED
    assert state.stored.pin_tries == 0
    assert state.apply_script(script(state, AdminOp.RESET_PIN_TRIES)) is None
    state.verify_pin(PIN)
    assert state.stored.pin_tries == 3


def test_completion_at_the_same_sam_with_its_figure() -> None:
    state = ready(new_state())
    state.reserve(ask(amount=5_000))
    state.end_session()                                              # the card was pulled
    ready(state, sam=SAM_B, time=T0 + 60)
    assert refusal(state.complete, CompleteRequest(counter=1, final_amount=4_000)) is Refusal.TOO_EARLY
    assert refusal(state.complete, CompleteRequest(counter=1, final_amount=None)) is Refusal.TOO_EARLY
    state.begin_session(SAM_A, T0 + 120)                             # no PIN needed to complete
    record = opened(state.complete(CompleteRequest(counter=1, final_amount=4_000)))
    assert (record.kind, record.amount, record.terminal, record.time) == (Kind.RECOVERED, 4_000, SAM_A, T0)
    assert state.stored.pending is None and state.stored.counter == 1
    assert refusal(state.complete, CompleteRequest(counter=1, final_amount=4_000)) is Refusal.NO_PENDING


def test_completion_elsewhere_after_the_grace_time_takes_the_reserve() -> None:
    state = ready(new_state())
    state.reserve(ask(amount=5_000))
    state.begin_session(SAM_B, T0 + GRACE_SECONDS)
    record = opened(state.complete(CompleteRequest(counter=1, final_amount=None)))
    assert (record.amount, record.new_balance, record.kind) == (5_000, 5_000, Kind.RECOVERED)
    assert state.stored.wallets[0].day_used == 5_000


def test_completion_by_issuer_script() -> None:
    state = ready(new_state())
    state.reserve(ask(amount=5_000))
    state.begin_session(SAM_B, T0 + 60)
    stale = script(state, AdminOp.COMPLETE_PENDING, struct.pack(">II8s", 9, 100, SAM_A))
    assert refusal(state.apply_script, stale) is Refusal.NO_PENDING
    big = script(state, AdminOp.COMPLETE_PENDING, struct.pack(">II8s", 1, 5_001, SAM_A))
    assert refusal(state.apply_script, big) is Refusal.ABOVE_RESERVE
    old = script(state, AdminOp.COMPLETE_PENDING, struct.pack(">II", 1, 1_234))     # no SAM id: refused
    assert refusal(state.apply_script, old) is Refusal.WRONG_DATA
    signed = state.apply_script(script(state, AdminOp.COMPLETE_PENDING,
                                       struct.pack(">II8s", 1, 1_234, SAM_A)))
    assert signed is not None
    record = opened(signed)
    assert (record.kind, record.amount, record.counter, state.stored.counter) == (Kind.RECOVERED, 1_234, 1, 2)


def test_an_issuer_completion_naming_another_sam_is_refused() -> None:
    """Security review, issue 18: a figure advised by a terminal other than the reserving one never
    completes the reservation, however well MACed; nothing changes on the card."""
    state = ready(new_state())
    state.reserve(ask(amount=5_000))
    state.begin_session(SAM_B, T0 + 60)
    before = state.stored
    foreign = script(state, AdminOp.COMPLETE_PENDING, struct.pack(">II8s", 1, 10, SAM_B))
    assert refusal(state.apply_script, foreign) is Refusal.TOO_EARLY
    assert state.stored == before and state.stored.pending is not None


def test_init_load_is_macd_under_the_auth_key() -> None:
    state = new_state()
    state.begin_session(SAM_A, T0)
    answer = state.init_load(InitLoadRequest(wallet=1, amount=2_000))
    message = init_load_message(CARD, key_version=1, wallet=1, counter=0, amount=2_000, unit=Unit.VOLUME,
                                balance=5_000)
    assert (answer.counter, answer.balance, answer.unit) == (0, 5_000, Unit.VOLUME)
    assert verify_mac(card_key(Purpose.AUTH), message, answer.mac)
    assert state.stored.counter == 0                                 # nothing written


def test_load_credits_once_at_its_counter() -> None:
    state = new_state()
    state.begin_session(SAM_A, T0)
    request = load_req(state, 2_500)
    record = opened(state.load(request))
    assert (record.kind, record.counter, record.amount, record.product) == (Kind.LOAD, 1, 2_500, 0)
    assert (record.previous_balance, record.new_balance, state.stored.counter) == (10_000, 12_500, 1)
    assert refusal(state.load, request) is Refusal.AUTH_FAILED       # replayed
    assert refusal(state.load, load_req(state, 100, counter=5)) is Refusal.AUTH_FAILED
    forged = dataclasses.replace(load_req(state, 100), amount=101)
    assert refusal(state.load, forged) is Refusal.AUTH_FAILED
    assert refusal(state.load, dataclasses.replace(load_req(state, 1), key_version=2)) is Refusal.NOT_FOUND
    assert refusal(state.load, load_req(state, 2**32 - 12_500)) is Refusal.OVERFLOW
    assert state.stored.wallets[0].balance == 12_500 and state.stored.counter == 1


def test_scripts_block_unblock_limits_and_run_once() -> None:
    state = ready(new_state())
    block = script(state, AdminOp.BLOCK)
    state.apply_script(block)
    assert state.stored.status is Status.BLOCKED and state.info().status is Status.BLOCKED
    assert refusal(state.apply_script, block) is Refusal.AUTH_FAILED  # replayed: the counter moved on
    assert refusal(state.reserve, ask()) is Refusal.BLOCKED
    assert refusal(state.load, load_req(state, 100)) is Refusal.BLOCKED
    forged = script(state, AdminOp.UNBLOCK, key=card_key(Purpose.LOAD))
    assert refusal(state.apply_script, forged) is Refusal.AUTH_FAILED
    state.apply_script(script(state, AdminOp.UNBLOCK))
    state.apply_script(script(state, AdminOp.SET_LIMITS, struct.pack(">BII", 0, 1_000, 0)))
    assert (state.stored.wallets[0].day_limit, state.stored.wallets[0].month_limit) == (1_000, 0)
    assert refusal(state.apply_script, script(state, AdminOp.SET_LIMITS, b"\x07" + bytes(8))) is \
        Refusal.WRONG_DATA
    assert state.reserve(ask(amount=6_000)).reserved == 1_000 and state.stored.counter == 4


@pytest.mark.parametrize("when", list(Tear))
def test_tearing_commits_all_or_nothing(when: Tear) -> None:
    state = ready(new_state())
    before = state.stored
    state.tear_at("reserve", when)
    with pytest.raises(CardTorn) as info:
        state.reserve(ask())
    assert info.value.committed is (when is Tear.AFTER_COMMIT) and state.session is None
    if when is Tear.BEFORE_COMMIT:
        assert state.stored == before
        return
    assert state.stored.pending is not None and state.stored.counter == 1
    ready(state)
    state.tear_at(Cmd.COMPLETE_PENDING, when)
    with pytest.raises(CardTorn):
        state.complete(CompleteRequest(counter=1, final_amount=10))
    assert state.stored.pending is None and state.stored.wallets[0].balance == 9_990
    assert opened(state.log_entry(1) or b"").amount == 10


def test_secrets_stay_out_of_reprs() -> None:
    state = new_state()
    text = repr(state) + repr(state.keys) + repr(state.stored)
    assert PIN not in text and all(card_key(p).hex() not in text for p in MASTERS)


_RESERVE = st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(1, 12_000))
_SETTLE = st.tuples(st.just("settle"), st.integers(0, 100))
_OPS = st.one_of(
    _RESERVE, _RESERVE, _RESERVE, _SETTLE, _SETTLE,
    st.tuples(st.just("complete"), st.integers(0, 100)),
    st.tuples(st.just("grace"), st.just(0)),
    st.tuples(st.just("load"), st.integers(0, 1), st.integers(1, 9_000)),
    st.tuples(st.just("replay"), st.just(0)),
    st.tuples(st.just("pull"), st.integers(0, 3 * DAY)),
    st.tuples(st.just("tear"), st.sampled_from(list(Cmd)[1:]), st.sampled_from(list(Tear))),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_OPS, min_size=4, max_size=40), st.booleans())
def test_any_sequence_keeps_the_books(ops: list[tuple[Any, ...]], other_sam: bool) -> None:
    state = ready(new_state())
    initial = [w.balance for w in state.stored.wallets]
    records: dict[int, bytes] = {}
    loads: list[LoadRequest] = []
    time, counter = T0, 0
    for op in ops:
        before = state.stored
        try:
            if state.session is None:
                time += 60
                ready(state, SAM_B if other_sam and op[0] != "complete" else SAM_A, time)
            kind = op[0]
            pending = state.stored.pending
            if kind == "reserve":
                state.reserve(ask(wallet=op[1], amount=op[2], time=time))
            elif kind in ("settle", "complete") and pending is not None:
                final = pending.reserved * op[1] // 100
                if kind == "settle":
                    state.settle(SettleRequest(pending.counter, final))
                else:
                    state.complete(CompleteRequest(pending.counter, final))
            elif kind == "grace" and pending is not None:
                time += GRACE_SECONDS
                ready(state, SAM_B, time)
                state.complete(CompleteRequest(pending.counter, None))
            elif kind == "load":
                loads.append(load_req(state, op[2], wallet=op[1]))
                state.load(loads[-1])
            elif kind == "replay" and loads:
                state.load(loads[-1])
            elif kind == "pull":
                time += op[1]
                state.end_session()
            elif kind == "tear":
                state.tear_at(op[1], op[2])
        except PurseRefused:
            assert state.stored.counter == before.counter and state.stored.wallets == before.wallets
        except CardTorn as torn:
            assert torn.committed or state.stored == before
        step = state.stored.counter - counter
        assert step in (0, 1)                    # advanced by one by a reserve or a load, never back
        if step:
            pending, newest = state.stored.pending, opened(state.stored.log[0]) if state.stored.log else None
            assert (pending is not None and pending.counter == state.stored.counter) or (
                newest is not None and newest.kind is Kind.LOAD and newest.counter == state.stored.counter)
        counter = state.stored.counter
        for signed in state.stored.log:
            assert records.setdefault(opened(signed).counter, signed) == signed   # one record per counter
    for number, w in enumerate(state.stored.wallets):
        mine = [opened(r) for r in records.values() if opened(r).wallet == number]
        credits = sum(r.amount for r in mine if r.kind is Kind.LOAD)
        debits = sum(r.amount for r in mine if r.kind is not Kind.LOAD)
        assert w.balance == initial[number] + credits - debits
    assert all(0 < c <= state.stored.counter for c in records)
