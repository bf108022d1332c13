"""The security review of issue 18, registry side: each finding as the attack it was, now refused, on a real
SQLite registry (test_purse_ingest.World: one account, a card's purse with chip wallets 0 and 1, SAM
5341000000000001 active at terminal T-0001)."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest
import test_purse_ingest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from test_fleet_authorize import CARD, Fleet, base_seed, litres_wallet
from test_fleet_authorize import NOW as FLEET_NOW
from test_purse_desk import _device as desk_device
from test_purse_desk import ask as desk_ask
from test_purse_ingest import NOW, SAM, START, World

from contracts.errors import ConfigError
from contracts.purse_keys import AdminOp
from contracts.purse_records import Kind
from contracts.service_messages import ServiceReason
from registry.fleet import ledger
from registry.fleet.admin import transfer
from registry.models import Account, AuthAllowance, Card, Wallet
from registry.prepaid import refund
from registry.purse.enrol import EnrolmentRefused, WalletSpec, card_wallets, enrol_sam
from registry.purse.loads import authorize_load
from registry.purse.purses import PurseError, purse_by_id, register_purse, register_sam
from registry.purse.refunds import Refund, refunds_for
from registry.purse.scripts import record_advice, request_script, script_applied, scripts_for
from registry.purse.topups import offers, order_topup
from registry.purse_models import PurseLoad, PurseScript
from registry.purse_models import PurseSam as SamRow

sm, world = test_purse_ingest.sm, test_purse_ingest.world      # fixtures: a fresh SQLite registry

SAM2 = bytes.fromhex("5341000000000002")                       # active at T-0002


def second_terminal(w: World) -> None:
    with w.sm() as s:
        register_sam(s, SAM2, "T-0002", now=NOW)
        s.commit()


def advise(w: World, counter: int, amount: int, terminal: str = "T-0001") -> PurseScript | None:
    with w.sm() as s:
        row = record_advice(s, w.purse_id, counter, amount, terminal=terminal, now=NOW)
        s.commit()
        return row


def refunds(w: World, counter: int) -> list[Refund]:
    with w.sm() as s:
        got = refunds_for(s, w.issuer, w.purse_id, counter, now=NOW)
        s.commit()
    return got


def rows(w: World) -> list[tuple[str, int | None, str | None, str]]:
    with w.sm() as s:
        purse = purse_by_id(s, w.purse_id)
        assert purse is not None
        return [(r.op, r.pending_counter, r.sam_id, r.status) for r in s.scalars(
            select(PurseScript).where(PurseScript.purse_id == purse.id).order_by(PurseScript.id))]


# -- 1. free fuel by a foreign advice --------------------------------------------------------------------

def test_an_advice_from_a_terminal_without_an_active_sam_is_refused_and_flagged(world: World) -> None:
    assert advise(world, 1, 0, terminal="T-0666") is None
    assert rows(world) == [] and world.flag_names() == ["foreign_advice"]


def test_the_completion_names_the_advising_sam(world: World) -> None:
    advise(world, 4, 1500)
    with world.sm() as s:
        [script] = scripts_for(s, world.issuer, world.purse_id, 5, now=NOW, pending=4)
        s.commit()
    assert script.op is AdminOp.COMPLETE_PENDING
    assert script.message[-16:] == struct.pack(">II8s", 4, 1500, SAM)


def test_a_foreign_advice_makes_no_refund_and_the_reserving_sams_replaces_it(world: World) -> None:
    second_terminal(world)
    assert advise(world, 1, 0, terminal="T-0002") is not None        # "the pump delivered nothing"
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))  # reserved at SAM (T-0001): 50.00
    assert refunds(world, 1) == []
    assert world.balance(world.chip0) == START[0] - 5000
    advise(world, 1, 3200)                                           # the reserving terminal's figure
    [refund] = refunds(world, 1)
    assert refund.amount == 1800 and world.balance(world.chip0) == START[0] - 3200
    assert [(op, sam) for op, _, sam, _ in rows(world)] == [
        ("advice", SAM2.hex()), ("complete_pending", SAM.hex()), ("refund", None)]
    world.sound()


def test_a_later_foreign_advice_is_kept_aside_and_changes_nothing(world: World) -> None:
    second_terminal(world)
    advise(world, 1, 3200)
    held = advise(world, 1, 0, terminal="T-0002")
    assert held is not None and (held.op, held.status) == ("advice", "held")
    assert "advice_conflict" in world.flag_names()
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))
    [refund] = refunds(world, 1)
    assert refund.amount == 1800
    assert advise(world, 1, 0, terminal="T-0002") is not None        # again: the same row, nothing new
    assert len(rows(world)) == 3
    world.sound()


SALE_A, SALE_B = str(uuid.uuid4()), str(uuid.uuid4())


def sale_advice(w: World, amount: int, sale: str, terminal: str = "T-0001") -> None:
    with w.sm() as s:
        sam = SAM2 if terminal == "T-0002" else SAM
        record_advice(s, w.purse_id, 1, amount, terminal=terminal, now=NOW, sam_id=sam, sale_id=sale)
        s.commit()


def completion(w: World, sale: str | None) -> list[bytes]:
    """The completions issued to a card at counter 1 whose pending slot (counter 1) keeps `sale`."""
    with w.sm() as s:
        got = scripts_for(s, w.issuer, w.purse_id, 1, now=NOW, pending=1, pending_sale=sale,
                          terminal="T-0001")
        s.commit()
    return [x.message[-16:] for x in got if x.op is AdminOp.COMPLETE_PENDING]


def test_the_completion_is_the_advice_of_the_sale_the_cards_slot_keeps(world: World) -> None:
    second_terminal(world)
    sale_advice(world, 0, SALE_A, terminal="T-0002")     # a RESERVE the card never took: it advises 0
    sale_advice(world, 700, SALE_B)                      # the card reserved that counter here: 7.00
    assert completion(world, str(uuid.uuid4())) == []    # no advice of the card's sale: nothing issued
    assert completion(world, SALE_B) == [struct.pack(">II8s", 1, 700, SAM)]
    assert completion(world, SALE_B) == [struct.pack(">II8s", 1, 700, SAM)]     # asked again: the same
    assert [(op, sam, status) for op, _, sam, status in rows(world)] == [
        ("advice", SAM2.hex(), "held"), ("complete_pending", SAM.hex(), "open")]
    assert completion(world, None) == [struct.pack(">II8s", 1, 700, SAM)]       # no sale told: as before


def test_two_sales_of_one_sam_at_one_counter_are_two_advices(world: World) -> None:
    sale_advice(world, 0, SALE_A)                        # the same terminal, its RESERVE lost, then taken
    sale_advice(world, 700, SALE_B)
    sale_advice(world, 700, SALE_B)                      # again: nothing new
    assert len(rows(world)) == 2
    assert completion(world, SALE_B) == [struct.pack(">II8s", 1, 700, SAM)]
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))   # recovered elsewhere all the same
    [refund] = refunds(world, 1)
    assert refund.amount == 5000 - 700                   # the reserving SAM's higher figure: no free fuel
    world.sound()


# -- 2. double spend through the shadow wallet -----------------------------------------------------------

def shadowed_fleet(tmp_path: Path) -> Fleet:
    """The fleet seed with litres wallet 1 (the shadow of chip wallet 0 of the card's purse) and wallet 2."""
    doc = base_seed()
    doc["wallets"] = [litres_wallet(1), litres_wallet(2, topup=1_000)]
    fleet = Fleet(tmp_path, doc)
    with fleet.sessions() as s:
        register_purse(s, fleet.card().id, bytes.fromhex("7077000000000042"), {0: 1}, now=FLEET_NOW)
        s.commit()
    return fleet


def test_a_shadow_wallet_pays_no_online_authorization_nor_offline_sale(tmp_path: Path) -> None:
    fleet = shadowed_fleet(tmp_path)
    answer = fleet.approved()
    assert fleet.all(AuthAllowance, AuthAllowance.auth_id == answer.auth_id)
    assert {a.wallet_id for a in fleet.all(AuthAllowance, AuthAllowance.auth_id == answer.auth_id)} == {2}
    assert fleet.available(1) == 100_000                            # nothing held on the shadow
    fleet.record(fleet.offline_doc(CARD, 2000))
    assert fleet.balance(1) == 100_000 and fleet.balance(2) == 1_000 - 2000


def test_a_card_whose_only_wallet_is_a_shadow_is_declined_online(tmp_path: Path) -> None:
    doc = base_seed()
    doc["wallets"] = [litres_wallet(1)]
    fleet = Fleet(tmp_path, doc)
    with fleet.sessions() as s:
        register_purse(s, fleet.card().id, bytes.fromhex("7077000000000043"), {0: 1}, now=FLEET_NOW)
        s.commit()
    assert not fleet.auth().approved and fleet.available(1) == 100_000


def test_an_operator_cannot_transfer_into_or_out_of_a_shadow(world: World) -> None:
    with world.sm() as s:
        for source, target in ((world.chip0, world.funds), (world.funds, world.chip0)):
            with pytest.raises(ConfigError):
                transfer(s, source, target, 100, actor="ops", reason="move", now=NOW)
    assert world.balance(world.chip0) == START[0]


def test_a_prepaid_refund_leaves_a_shadow_alone(world: World) -> None:
    with world.sm() as s:
        account = s.get(Account, world.account_id)
        chip = s.get(Wallet, world.chip0)
        assert account is not None and chip is not None
        account.kind = "prepaid"
        ledger.post(s, chip, "topup", 4000, key="topup:before-the-chip", at=NOW, actor="test")
        done = refund(s, key="r1", actor="ops", reason="closing", now=NOW, account_id=world.account_id)
        s.commit()
    assert world.chip0 not in {m.wallet_id for m in done.movements}
    assert world.balance(world.chip0) == START[0] + 4000


def test_a_wallet_a_card_is_issued_on_cannot_be_personalised_as_a_shadow(world: World) -> None:
    with world.sm() as s:
        card = s.get(Card, world.card_id)
        assert card is not None
        other = Card(token=uuid.uuid4().hex, masked="707700******0027", account_id=world.account_id,
                     expiry="2912", pin_verifier="", status="active", status_changed_at=NOW,
                     wallet_id=world.litres)
        s.add(other)
        s.flush()
        with pytest.raises(PurseError):
            card_wallets(s, card, [WalletSpec(number=1, wallet_id=world.litres)])
        with pytest.raises(PurseError):                               # already a shadow
            card_wallets(s, card, [WalletSpec(number=0, wallet_id=world.chip0)])


# -- 3. a refund paid twice by a race ----------------------------------------------------------------------

def test_the_database_holds_one_completion_and_one_refund_per_reservation(world: World) -> None:
    for op in ("complete_pending", "refund"):
        with world.sm() as s:
            purse = purse_by_id(s, world.purse_id)
            assert purse is not None
            for _ in range(2):
                s.add(PurseScript(purse_id=purse.id, op=op, payload="", pending_counter=7, status="open",
                                  requested_at=NOW))
            with pytest.raises(IntegrityError):
                s.flush()
    with world.sm() as s:                          # other SAMs' advices and operator scripts: any number
        purse = purse_by_id(s, world.purse_id)
        assert purse is not None
        s.add_all([PurseScript(purse_id=purse.id, op=op, payload="", pending_counter=c, status="open",
                               requested_at=NOW) for op, c in (("advice", 7), ("advice", 7),
                                                                ("set_limits", None), ("set_limits", None))])
        s.flush()


# -- 4. contact poisoning ---------------------------------------------------------------------------------

def test_a_contacts_claims_move_neither_the_counter_nor_the_chip_status(world: World) -> None:
    with world.sm() as s:
        scripts_for(s, world.issuer, world.purse_id, 500, now=NOW, chip_blocked=True, terminal="T-0001")
        s.commit()
    with world.sm() as s:
        purse = purse_by_id(s, world.purse_id)
        assert purse is not None and (purse.last_counter, purse.chip_status) == (0, "active")
    with world.sm() as s:                          # the genuine card at counter 0 still loads
        answer = authorize_load(s, world.issuer, world.card.load_request(0, 1000), now=NOW)
        s.commit()
    assert answer.granted, answer.reason


def test_only_the_terminal_a_script_was_issued_to_reports_it_applied(world: World) -> None:
    with world.sm() as s:
        request_script(s, world.purse_id, "reset_pin_tries", actor="ops", now=NOW)
        [script] = scripts_for(s, world.issuer, world.purse_id, 3, now=NOW, terminal="T-0001")
        s.commit()
    for terminal, applied in (("T-0002", False), ("", False), ("T-0001", True), ("T-0001", False)):
        with world.sm() as s:
            assert script_applied(s, world.purse_id, script.script_id, now=NOW, terminal=terminal) is applied
            s.commit()
    with world.sm() as s:
        purse = purse_by_id(s, world.purse_id)
        assert purse is not None and purse.last_counter == 4


# -- 5. stuck completion ----------------------------------------------------------------------------------

def test_a_completion_goes_only_to_a_card_reporting_that_counter_pending(world: World) -> None:
    advise(world, 4, 1500)

    def ops(**kw: int) -> list[AdminOp]:
        with world.sm() as s:
            got = scripts_for(s, world.issuer, world.purse_id, 6, now=NOW, **kw)
            s.commit()
        return [x.op for x in got]

    assert ops() == [] and ops(pending=5) == []          # no slot, or another one: never issued
    assert ops(pending=4) == [AdminOp.COMPLETE_PENDING]
    world.card.counter = 3
    world.ingest(world.card.purchase(0, 1500, kind=Kind.RECOVERED))
    assert ops(pending=4) == []                          # its record counted: closed
    assert [r[3] for r in rows(world)] == ["cancelled"]


# -- 6. a load reversed while its MAC is still good ---------------------------------------------------------

def test_a_refund_asked_again_at_a_passed_counter_reuses_its_grant(world: World) -> None:
    advise(world, 1, 3200)
    world.ingest(world.card.purchase(0, 5000, kind=Kind.RECOVERED))
    [first] = refunds(world, 1)
    world.ingest(world.card.purchase(0, 100))            # counter 2: the refund at 1 was never applied
    assert world.balance(world.chip0) == START[0] - 5100
    [again] = refunds(world, 1)                          # a stale contact names counter 1 again
    assert again == first and world.balance(world.chip0) == START[0] - 5100
    world.sound()


def test_a_load_grant_the_card_passed_by_an_issuer_script_is_reversed_and_offered_again(world: World) -> None:
    with world.sm() as s:
        order_topup(s, world.purse_id, 0, 2500, actor="ops", now=NOW)
        [offer] = offers(s, world.purse_id, 0)
        s.commit()
    request = world.card.load_request(0, 2500, load_id=offer.load_id)
    with world.sm() as s:
        assert authorize_load(s, world.issuer, request, now=NOW).granted      # the card was pulled
        request_script(s, world.purse_id, "reset_pin_tries", actor="ops", now=NOW)
        [script] = scripts_for(s, world.issuer, world.purse_id, 0, now=NOW, terminal="T-0001")
        s.commit()
    assert world.balance(world.chip0) == START[0] + 2500
    for terminal in ("T-0002", "T-0001"):      # only the terminal it was issued to reports it applied
        with world.sm() as s:
            script_applied(s, world.purse_id, script.script_id, now=NOW, terminal=terminal)
            s.commit()
            grant = s.get(PurseLoad, request.load_id.hex())
            expected = "authorized" if terminal == "T-0002" else "reversed"
            assert grant is not None and grant.status == expected
    assert world.balance(world.chip0) == START[0] and world.flag_names() == ["load_reversed"]
    with world.sm() as s:                      # the card is at counter 1 now: the order under its id there
        [again] = offers(s, world.purse_id, 1)
        assert (again.order, again.amount) == (offer.order, 2500) and again.load_id != offer.load_id
    world.sound()

# -- 7. SAM key pinning -------------------------------------------------------------------------------------

def compressed_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def test_a_sam_enrolled_again_with_another_key_is_refused(world: World) -> None:
    sam, first = bytes.fromhex("5341000000000077"), compressed_key()
    with world.sm() as s:
        desk_device(s)
        enrol_sam(s, world.issuer, terminal="T-0001", sam_id=sam, sam_public_key=first, now=NOW)
        enrol_sam(s, world.issuer, terminal="T-0001", sam_id=sam, sam_public_key=first, now=NOW)  # again
        with pytest.raises(EnrolmentRefused) as refused:
            enrol_sam(s, world.issuer, terminal="T-0001", sam_id=sam, sam_public_key=compressed_key(),
                      now=NOW, replace=True)
        assert refused.value.reason == "key_changed"
        row = s.get(SamRow, sam.hex())
        assert row is not None and row.public_key == first.hex()


# -- 8. a forward names a SAM of its own terminal -----------------------------------------------------------

def test_records_forwarded_under_another_terminals_sam_are_refused(world: World) -> None:
    second_terminal(world)
    record = world.card.purchase(0, 300).hex()
    for sam in (SAM2, bytes.fromhex("5341000000000099")):
        got = desk_ask(world, "purse_records", sam_id=sam.hex(), items=[{"record": record}])
        assert not got["ok"] and got["reason"] == ServiceReason.NOT_ALLOWED
    assert world.balance(world.chip0) == START[0]
    got = desk_ask(world, "purse_records", sam_id=SAM.hex(), items=[{"record": record}])
    assert got["result"]["counted"] == 1
