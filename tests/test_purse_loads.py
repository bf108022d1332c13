"""registry.purse.loads and registry.purse.scripts on a real SQLite registry: a load is granted only for the
genuine card at its counter, funded from the account (never made), booked once per load id, confirmed by
the card's LOAD record or settled from its log or reversed; issuer scripts MACed for one counter each; and a
property test over loads, purchases, replays and tampering: the shadow is the ledger, agrees with the card,
and value only moves, never appears."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import test_purse_ingest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from test_purse_ingest import FUNDS, NOW, START, World

from contracts import purse_messages as pm
from contracts.purse_keys import AdminOp, Purpose, Unit, load_message, verify_mac
from contracts.purse_records import Kind
from registry.db import open_database
from registry.fleet import cards, ledger
from registry.keys import RegistryKeys
from registry.models import Card, Movement
from registry.purse import answers
from registry.purse.issuer import IssuerKeys
from registry.purse.loads import LoadGrant, LoadRequest, authorize_load, confirm_load, settle_loads
from registry.purse.purses import purse_by_id, register_purse
from registry.purse.scripts import (
    limits_payload,
    record_advice,
    request_script,
    script_applied,
    scripts_for,
)
from registry.purse.topups import offers, order_topup, orders
from registry.purse_models import ChipPurse, PurseLoad

LATER = NOW + dt.timedelta(days=8)
sm, world = test_purse_ingest.sm, test_purse_ingest.world      # fixtures: a fresh SQLite registry


def grant(w: World, request: LoadRequest, now: dt.datetime = NOW) -> LoadGrant:
    with w.sm() as s:
        answer = authorize_load(s, w.issuer, request, now=now)
        s.commit()
    return answer


def status(w: World, load_id: bytes) -> str:
    with w.sm() as s:
        row = s.get(PurseLoad, load_id.hex())
        return row.status if row is not None else "none"


def card_checks(w: World, request: LoadRequest, answer: LoadGrant) -> bool:
    """What the card does with the grant: recompute the load MAC under its own LOAD key."""
    message = load_message(w.purse_id, key_version=answer.key_version, wallet=request.wallet,
                           counter=w.card.counter, amount=request.amount, unit=request.unit,
                           load_id=request.load_id)
    return verify_mac(w.issuer.card_key(w.purse_id, Purpose.LOAD, answer.key_version), message, answer.mac)


def test_a_load_is_funded_from_the_account_once_and_confirmed_by_the_card(world: World) -> None:
    request = world.card.load_request(0, 2500)
    answer = grant(world, request)
    assert answer.granted and answer.counter == 0 and card_checks(world, request, answer)
    assert grant(world, request) == answer                             # the same request: the same grant
    assert world.balance(world.funds) == FUNDS - START[0] - 2500
    assert world.balance(world.chip0) == START[0] + 2500
    record = world.card.apply_load(0, 2500)
    with world.sm() as s:
        state, report = confirm_load(s, world.issuer, request.load_id, record, source="mqtt:T-0001", now=NOW)
        s.commit()
    assert state == "confirmed" and report.counted == 1 and report.flags == {}
    assert world.ingest(world.card.purchase(0, 700)) == {"counted": 1, "duplicate": 0, "stored": 1}
    assert world.balance(world.chip0) == world.card.balances[0] == START[0] + 2500 - 700
    world.sound()


def test_a_terminal_loads_only_what_was_ordered_and_the_order_closes_once_applied(world: World) -> None:
    unordered = world.card.load_request(0, 2500, load_id=os.urandom(16))
    assert grant(world, unordered) == LoadGrant(unordered.load_id, False, "no_order")
    assert world.balance(world.chip0) == START[0]                      # nothing moved
    with world.sm() as s:
        order_topup(s, world.purse_id, 0, 2500, actor="web:fleet@acme", now=NOW)
        s.commit()
        (offer,) = offers(s, world.purse_id, world.card.counter)
        s.commit()
    assert (offer.wallet, offer.amount) == (0, 2500)
    bigger = world.card.load_request(0, 9000, load_id=offer.load_id)   # the order's id, another amount
    assert grant(world, bigger).reason == "no_order"
    request = world.card.load_request(0, 2500, load_id=offer.load_id)
    assert grant(world, request).granted
    with world.sm() as s:
        assert offers(s, world.purse_id, world.card.counter) == []      # granted: not offered again
    record = world.card.apply_load(0, 2500)
    with world.sm() as s:
        confirm_load(s, world.issuer, request.load_id, record, source="mqtt:T-0001", now=NOW)
        s.commit()
        assert offers(s, world.purse_id, world.card.counter) == []
        purse = purse_by_id(s, world.purse_id)
        assert purse is not None and orders(s, purse) == []
    assert world.balance(world.chip0) == START[0] + 2500


def test_a_load_id_reused_for_another_load_is_refused(world: World) -> None:
    request = world.card.load_request(0, 2500)
    assert grant(world, request).granted
    other = world.card.load_request(0, 9999, load_id=request.load_id)
    assert grant(world, other) == LoadGrant(request.load_id, False, "load_id_reused")


def test_loads_the_issuer_must_refuse(world: World) -> None:
    good = world.card.load_request(0, 1000)
    forged = LoadRequest(**{**good.__dict__, "load_id": os.urandom(16), "amount": 100_000})
    assert grant(world, forged).reason == "bad_mac"                    # the MAC was for 1000
    assert grant(world, world.card.load_request(0, FUNDS)).reason == "insufficient_funds"
    assert grant(world, world.card.load_request(5, 100)).reason == "unknown_wallet"
    assert world.ingest(world.card.purchase(0, 100), world.card.purchase(0, 100))["counted"] == 2
    world.card.counter, saved = 0, world.card.counter              # an old INITIALIZE LOAD answer
    behind = world.card.load_request(0, 100)
    world.card.counter = saved
    assert grant(world, behind).reason == "counter_behind"
    with world.sm() as s:
        cards.move(s, world.card_id, "temp_block", actor="ops", reason="check", now=NOW)
        s.commit()
    assert grant(world, world.card.load_request(0, 100)).reason == "card_blocked"
    assert world.balance(world.funds) == FUNDS - START[0]              # nothing was booked
    with world.sm() as s:
        assert s.scalar(select(func.count()).select_from(PurseLoad)) == 0


def test_a_load_the_card_never_applied_is_reversed_from_its_log(world: World) -> None:
    request = world.card.load_request(0, 2500)
    assert grant(world, request).granted                               # the card was pulled: not applied
    assert world.ingest(world.card.purchase(0, 400)) == {"counted": 1, "duplicate": 0, "stored": 1}
    assert world.flag_names() == ["load_reversed"]
    assert status(world, request.load_id) == "reversed"
    assert world.balance(world.funds) == FUNDS - START[0]
    assert world.balance(world.chip0) == world.card.balances[0] == START[0] - 400
    world.sound()


def test_an_unconfirmed_load_is_in_doubt_then_reversed_and_a_late_record_books_it_again(world: World) -> None:
    request = world.card.load_request(1, 3000)
    assert grant(world, request).granted
    with world.sm() as s:
        assert settle_loads(s, now=NOW + dt.timedelta(minutes=20)) == (1, 0)
        s.commit()
    assert status(world, request.load_id) == "in_doubt"
    with world.sm() as s:               # past the deadline, but nothing shows the MAC can no longer apply
        assert settle_loads(s, now=LATER) == (0, 0)
        s.commit()
    assert status(world, request.load_id) == "in_doubt" and world.balance(world.chip1) == START[1] + 3000
    late = world.card.apply_load(1, 3000)                              # the card did apply it after all
    world.ingest(world.card.purchase(1, 100))                          # counter 2 came, counter 1 did not
    with world.sm() as s:
        assert settle_loads(s, now=LATER) == (0, 1)
        s.commit()
    assert status(world, request.load_id) == "reversed"
    assert world.balance(world.chip1) == START[1] - 100
    assert world.ingest(late)["load_after_reversal"] == 1
    assert status(world, request.load_id) == "confirmed"
    assert world.balance(world.chip1) == world.card.balances[1] == START[1] + 3000 - 100
    assert world.balance(world.litres) == 50_000 - START[1] - 3000
    world.sound()


def test_a_load_record_no_grant_explains_counts_nothing(world: World) -> None:
    assert world.ingest(world.card.apply_load(0, 5000))["unknown_load"] == 1
    assert world.balance(world.chip0) == START[0]


def check_script(w: World, script_counter: int, message: bytes, tag: bytes) -> bool:
    key = w.issuer.card_key(w.purse_id, Purpose.ADMIN, 1)
    return verify_mac(key, message, tag) and struct.unpack(">I", message[11:15])[0] == script_counter


def contact(w: World, counter: int, **kw: bool | int) -> list[tuple[AdminOp, int, int]]:
    with w.sm() as s:
        scripts = scripts_for(s, w.issuer, w.purse_id, counter, now=NOW, **kw)
        s.commit()
    assert all(check_script(w, x.counter, x.message, x.mac) for x in scripts)
    return [(x.op, x.counter, x.script_id) for x in scripts]


def test_a_blocked_card_is_blocked_on_the_chip_at_its_next_contact(world: World) -> None:
    assert contact(world, 3) == []
    with world.sm() as s:
        cards.move(s, world.card_id, "temp_block", actor="ops", reason="driver left", now=NOW)
        s.commit()
    [(op, counter, ident)] = contact(world, 3)
    assert (op, counter) == (AdminOp.BLOCK, 3)
    [(op, counter, again)] = contact(world, 3)                         # not applied: issued again
    assert again == ident
    with world.sm() as s:
        assert script_applied(s, world.purse_id, ident, now=NOW)
        s.commit()
    assert contact(world, 4) == []
    with world.sm() as s:
        cards.move(s, world.card_id, "unblock", actor="ops", reason="back", now=NOW)
        s.commit()
    assert [op for op, _, _ in contact(world, 4)] == [AdminOp.UNBLOCK]
    assert contact(world, 4, chip_blocked=False) == []


def test_operator_scripts_and_a_completion_each_name_their_own_counter(world: World) -> None:
    with world.sm() as s:
        request_script(s, world.purse_id, "set_limits", payload=limits_payload(1, 10_000, 200_000),
                       actor="ops", now=NOW)
        request_script(s, world.purse_id, "reset_pin_tries", actor="ops", now=NOW)
        record_advice(s, world.purse_id, 8, 4200, terminal="T-0001", now=NOW)
        s.commit()
    assert [op for op, _, _ in contact(world, 8)] == [AdminOp.RESET_PIN_TRIES, AdminOp.SET_LIMITS]
    got = contact(world, 8, pending=8)                                 # the card reports its open slot
    assert [(op, counter) for op, counter, _ in got] == [
        (AdminOp.RESET_PIN_TRIES, 8), (AdminOp.SET_LIMITS, 9), (AdminOp.COMPLETE_PENDING, 10)]
    for _, _, ident in got[:2]:
        with world.sm() as s:
            assert script_applied(s, world.purse_id, ident, now=NOW)
            s.commit()
    world.card.counter = 7
    world.ingest(world.card.purchase(0, 4200))                         # the completion's record, counter 8
    assert contact(world, 11) == []
    world.card.counter = 11
    assert "counter_gap" not in world.ingest(world.card.purchase(0, 100))


OPS = st.lists(st.one_of(
    st.tuples(st.just("load"), st.integers(0, 1), st.integers(1, 5000), st.booleans()),
    st.tuples(st.just("buy"), st.integers(0, 1), st.integers(0, 3000), st.booleans()),
    st.tuples(st.just("replay"), st.integers(0, 50), st.just(0), st.booleans()),
    st.tuples(st.just("tamper"), st.integers(0, 50), st.integers(0, 59), st.booleans())), max_size=12)


def test_property_the_shadow_is_the_ledger_and_no_value_appears(tmp_path: Path) -> None:
    _, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = RegistryKeys(card_key=os.urandom(32), pin_key=os.urandom(32), kek=os.urandom(32))
    ids = itertools.count(1)

    @given(OPS)
    @settings(max_examples=50, deadline=None)
    def run(ops: list[tuple[str, int, int, bool]]) -> None:
        w = World(made, keys, purse_id=struct.pack(">Q", 0x7077_0000_0001_0000 + next(ids)))
        sent: list[bytes] = []
        debits = loads = 0
        for op, wallet, amount, flag in ops:
            if op == "load":
                request = w.card.load_request(wallet, amount)
                answer = grant(w, request)
                if answer.granted and flag and card_checks(w, request, answer):
                    sent.append(w.card.apply_load(wallet, amount))     # else the card never applied it
                    w.ingest(sent[-1])
                    loads += amount if wallet == 0 else 0
            elif op == "buy" and amount <= w.card.balances[wallet]:
                sent.append(w.card.purchase(wallet, amount))
                w.ingest(sent[-1])
                debits += amount if wallet == 0 else 0
            elif op == "replay" and sent:
                w.ingest(sent[wallet % len(sent)], source="bundle:again")
            elif op == "tamper" and sent:
                raw = bytearray(sent[wallet % len(sent)])
                raw[amount] ^= 0x01
                w.ingest(bytes(raw))
        w.ingest(w.card.purchase(0, 0))                                # the card's next contact settles
        with w.sm() as s:
            settle_loads(s, now=LATER)
            assert ledger.check(s) == []
            moved = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                             .where(Movement.wallet_id.in_((w.funds, w.chip0)))) or 0
            s.commit()
        assert w.balance(w.chip0) == w.card.balances[0] == START[0] + loads - debits
        assert w.balance(w.chip1) == w.card.balances[1]
        assert moved == FUNDS - debits                                 # money only moved, or was spent
        assert w.balance(w.funds) == FUNDS - START[0] - loads

    run()


def test_a_load_mac_is_under_the_load_key_version_the_purse_holds(world: World) -> None:
    with world.sm() as s:
        issuer = IssuerKeys.load(s, world.keys, now=NOW)
        assert issuer.rotate(s, Purpose.LOAD, now=NOW) == 2
        other = Card(token=uuid.uuid4().hex, masked="707700******0027", account_id=world.account_id,
                     expiry="2912", pin_verifier="", status="active")
        s.add(other)
        s.flush()
        row = register_purse(s, other.id, bytes.fromhex("7077000000000027"), {}, now=NOW,
                             key_versions={Purpose.LOAD: 2})
        assert (row.auth_version, row.load_version) == (1, 2)
        purse = s.scalars(select(ChipPurse).where(ChipPurse.purse_id == world.purse_id.hex())).one()
        purse.load_version = 2                          # the card received its version-2 LOAD key
        s.commit()
        world.issuer = issuer
    world.card.issuer = world.issuer
    request = world.card.load_request(0, 800)
    answer = grant(world, request)
    assert answer.key_version == 2 and card_checks(world, request, answer)


def test_the_payload_answers_round_trip(world: World) -> None:
    """What the MQTT wiring does: decode, answer (registry.purse.answers), encode; the terminal decodes."""
    request = world.card.load_request(0, 1200)
    doc = {"load_id": request.load_id.hex(), "terminal": "T-0001", "purse_id": world.purse_id.hex(),
           "wallet": 0, "counter": request.counter, "amount": 1200, "unit": 1, "balance": request.balance,
           "key_version": 1, "mac": request.mac.hex()}
    with world.sm() as s:
        answer = pm.decode(pm.encode(answers.on_load_request(s, world.issuer, pm.decode(
            pm.encode(doc, pm.LOAD_REQUEST), pm.LOAD_REQUEST), now=NOW), pm.LOAD_GRANT), pm.LOAD_GRANT)
        s.commit()
    granted = LoadGrant(request.load_id, True, mac=bytes.fromhex(answer["mac"]),
                        key_version=answer["key_version"], counter=answer["counter"])
    assert answer["granted"] and card_checks(world, request, granted)
    loaded = world.card.apply_load(0, 1200).hex()
    confirm = {"load_id": doc["load_id"], "terminal": "T-0001", "record": loaded}
    records = [world.card.purchase(0, 300).hex()]
    upload = {"kind": pm.PURSE_RECORDS_KIND, "terminal": "T-0001", "sam_id": "5341000000000001",
              "items": [{"record": r} for r in records]}
    advice = {"terminal": "T-0001", "purse_id": world.purse_id.hex(), "counter": 9, "amount": 100,
              "sale_id": str(uuid.uuid4())}
    with world.sm() as s:
        assert answers.on_load_confirm(s, world.issuer, pm.decode(pm.encode(confirm, pm.LOAD_CONFIRM),
                                                                  pm.LOAD_CONFIRM), now=NOW) == "confirmed"
        ack = answers.on_records(s, world.issuer, pm.decode(pm.encode(upload, pm.PURSE_RECORDS),
                                                            pm.PURSE_RECORDS), now=NOW)
        assert pm.decode(pm.encode(ack, pm.PURSE_RECORDS_ACK), pm.PURSE_RECORDS_ACK)["counted"] == 1
        answers.on_advice(s, pm.decode(pm.encode(advice, pm.PURSE_ADVICE), pm.PURSE_ADVICE), now=NOW)
        ask = {"request_id": str(uuid.uuid4()), "terminal": "T-0001", "purse_id": world.purse_id.hex(),
               "counter": 9, "blocked": False}
        assert answers.on_scripts_request(s, world.issuer, ask, now=NOW)["scripts"] == []   # no slot told
        got = pm.decode(pm.encode(answers.on_scripts_request(s, world.issuer, {**ask, "pending": 9}, now=NOW),
                                  pm.SCRIPTS_ANSWER), pm.SCRIPTS_ANSWER)
        [script] = got["scripts"]
        assert (script["op"], script["counter"]) == (int(AdminOp.COMPLETE_PENDING), 9)
        applied = {"terminal": "T-0001", "purse_id": world.purse_id.hex(),
                   "script_ids": [script["script_id"]]}
        assert answers.on_scripts_applied(s, pm.decode(pm.encode(applied, pm.SCRIPTS_APPLIED),
                                                       pm.SCRIPTS_APPLIED), now=NOW) == 1
        s.commit()
    assert world.balance(world.chip0) == world.card.balances[0] == START[0] + 1200 - 300


def ask_scripts(w: World, counter: int) -> dict[str, Any]:
    ask = {"request_id": str(uuid.uuid4()), "terminal": "T-0001", "purse_id": w.purse_id.hex(),
           "counter": counter, "blocked": False}
    with w.sm() as s:
        answer = answers.on_scripts_request(s, w.issuer, pm.decode(pm.encode(ask, pm.SCRIPTS_REQUEST),
                                                                   pm.SCRIPTS_REQUEST), now=NOW)
        s.commit()
    return pm.decode(pm.encode(answer, pm.SCRIPTS_ANSWER), pm.SCRIPTS_ANSWER)


def test_a_recovered_reserve_beyond_the_pump_figure_is_refunded_as_a_load(world: World) -> None:
    with world.sm() as s:
        record_advice(s, world.purse_id, 1, 3200, terminal="T-0001", now=NOW)   # the pump delivered 32.00
        s.commit()
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))          # another terminal took 50.00
    assert world.balance(world.chip0) == START[0] - 5000
    first = ask_scripts(world, 1)
    assert first["scripts"] == [] and ask_scripts(world, 1)["loads"] == first["loads"]     # the same grant
    [refund] = first["loads"]
    assert (refund["amount"], refund["counter"], refund["wallet"]) == (1800, 1, 0)
    assert world.balance(world.chip0) == START[0] - 3200                      # booked once
    assert refund_checks(world, refund)
    world.ingest(world.card.purchase(0, 100))                  # pulled before the load: counter 2 is a sale
    assert world.balance(world.chip0) == START[0] - 5100                      # the refund grant reversed
    [again] = ask_scripts(world, 2)["loads"]
    assert (again["amount"], again["counter"]) == (1800, 2) and again["load_id"] != refund["load_id"]
    assert refund_checks(world, again)
    world.ingest(world.card.apply_load(0, 1800))
    assert ask_scripts(world, 3)["loads"] == []
    assert world.balance(world.chip0) == world.card.balances[0] == START[0] - 3300
    assert world.balance(world.funds) == FUNDS - START[0]                     # no account money moved
    world.sound()


def refund_checks(w: World, refund: dict[str, Any]) -> bool:
    """The card's check of a refund load: the load MAC at its counter, under its LOAD key."""
    message = load_message(w.purse_id, key_version=refund["key_version"], wallet=refund["wallet"],
                           counter=refund["counter"], amount=refund["amount"], unit=Unit(refund["unit"]),
                           load_id=bytes.fromhex(refund["load_id"]))
    key = w.issuer.card_key(w.purse_id, Purpose.LOAD, refund["key_version"])
    return verify_mac(key, message, bytes.fromhex(refund["mac"]))
