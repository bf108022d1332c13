"""The purse's commands and data records (contracts/purse_apdu.py, contracts/purse_wallets.py)."""

from __future__ import annotations

import datetime
import doctest
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts.purse_apdu as apdu
import contracts.purse_wallets as pw
from contracts.purse_keys import Unit
from contracts.purse_records import Kind, PurchaseRecord, sign
from hostsim.cards.iso7816 import split_apdu

U32 = st.integers(0, 2**32 - 1)
DATES = st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2099, 12, 31))


def ymd(d: datetime.date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


RANGES = st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: (min(t), max(t))),
                  max_size=16).map(tuple)
WALLETS = st.builds(pw.Wallet, number=st.integers(0, 7), unit=st.sampled_from(list(Unit)), balance=U32,
                    products=RANGES, expiry=DATES.map(ymd), day_limit=U32, day_used=U32,
                    day=st.one_of(st.just(0), DATES.map(ymd)), month_limit=U32, month_used=U32,
                    month=st.one_of(st.just(0), DATES.map(lambda d: d.year * 100 + d.month)))
SLOTS = st.builds(pw.PendingSlot, counter=U32, wallet=st.integers(0, 7), product=st.integers(0, 999),
                  reserved=U32, sam_id=st.binary(min_size=8, max_size=8), time=U32,
                  sale_id=st.binary(min_size=16, max_size=16))
VERSIONS = st.integers(1, 255)
INFOS = st.builds(pw.PurseInfo, purse_id=st.binary(min_size=8, max_size=8),
                  status=st.sampled_from(list(pw.Status)), counter=U32,
                  keys=st.builds(pw.KeyVersions, VERSIONS, VERSIONS, VERSIONS, VERSIONS), last_time=U32,
                  pin_tries=st.integers(0, 3), wallet_count=st.integers(0, 8), pending=st.none() | SLOTS)


def test_doctests() -> None:
    for module in (apdu, pw):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


@settings(max_examples=80, deadline=None)
@given(WALLETS, SLOTS, INFOS)
def test_records_round_trip(wallet: pw.Wallet, slot: pw.PendingSlot, info: pw.PurseInfo) -> None:
    assert pw.Wallet.decode(wallet.encode()) == wallet
    assert pw.PendingSlot.decode(slot.encode()) == slot
    assert pw.PurseInfo.decode(info.encode()) == info
    assert apdu.parse_fci(apdu.fci(info)) == info


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_gives_typed_errors(raw: bytes) -> None:
    for parse in (pw.Wallet.decode, pw.PendingSlot.decode, pw.PurseInfo.decode, apdu.parse_fci,
                  apdu.LogEntry.decode, apdu.ReserveRequest.decode, apdu.SettleRequest.decode,
                  apdu.InitLoadRequest.decode, apdu.LoadRequest.decode, apdu.ScriptRequest.decode,
                  apdu.ReserveAnswer.decode, apdu.InitLoadAnswer.decode,
                  lambda b: apdu.CompleteRequest.decode(b[0] if b else 0, b[1:])):
        try:
            parse(raw)
        except pw.PurseDataError as exc:
            assert exc.reason


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 7), st.integers(0, 999), st.integers(1, 2**32 - 1), U32, U32, st.integers(1, 255))
def test_requests_round_trip(wallet: int, product: int, amount: int, counter: int, time: int,
                             version: int) -> None:
    sale = os.urandom(16)
    reserve = apdu.ReserveRequest(wallet=wallet, product=product, max_amount=amount, time=time, sale_id=sale)
    assert apdu.ReserveRequest.decode(apdu.reserve(reserve).data) == reserve
    assert apdu.ReserveAnswer.decode(apdu.ReserveAnswer(amount, counter).encode()) == (
        apdu.ReserveAnswer(amount, counter))
    settle = apdu.SettleRequest(counter=counter, final_amount=amount)
    assert apdu.SettleRequest.decode(apdu.settle(settle).data) == settle
    for final in (amount, None):
        complete = apdu.CompleteRequest(counter=counter, final_amount=final)
        command = apdu.complete_pending(complete)
        assert apdu.CompleteRequest.decode(command.p1, command.data) == complete
    init = apdu.InitLoadRequest(wallet=wallet, amount=amount)
    assert apdu.InitLoadRequest.decode(apdu.initialize_load(init).data) == init
    answer = apdu.InitLoadAnswer(key_version=version, counter=counter, unit=Unit.VOLUME, balance=time,
                                 mac=os.urandom(16))
    assert apdu.InitLoadAnswer.decode(answer.encode()) == answer
    load = apdu.LoadRequest(key_version=version, wallet=wallet, amount=amount, load_id=sale, mac=sale[::-1])
    assert apdu.LoadRequest.decode(apdu.load(load).data) == load
    script = apdu.ScriptRequest(message=bytes(17 + wallet), mac=sale)
    assert apdu.ScriptRequest.decode(apdu.apply_script(script).data) == script


def test_commands_are_short_apdus_of_the_documented_class() -> None:
    sale = bytes(16)
    commands = [apdu.select(), apdu.read_wallet(0), apdu.read_log(10), apdu.get_data(apdu.TAG_COUNTER),
                apdu.mutual_authenticate(1, bytes(165)), apdu.mutual_authenticate(2, bytes(64)),
                apdu.verify(bytes(16)), apdu.reserve(apdu.ReserveRequest(0, 19, 100, 0, sale)),
                apdu.settle(apdu.SettleRequest(0, 1)), apdu.initialize_load(apdu.InitLoadRequest(0, 1)),
                apdu.complete_pending(apdu.CompleteRequest(0, None)),
                apdu.load(apdu.LoadRequest(1, 0, 1, sale, sale)),
                apdu.apply_script(apdu.ScriptRequest(bytes(17), sale))]
    for command in commands:
        parts = split_apdu(command.to_bytes())
        assert parts == (command.cla, command.ins, command.p1, command.p2, command.data)
    assert [c.cla for c in commands] == [0, 0, 0, 0, 0x80, 0x80] + [0x84] * 7
    assert all(c.secure for c in commands[6:])
    assert apdu.read_wallet(2).p1 == 3 and apdu.read_wallet(2).p2 == 0x0C
    assert apdu.read_log(1).p2 == 0x14 and apdu.get_data(apdu.TAG_PIN_TRIES).p1 == 0x9F
    assert apdu.verify(bytes(16)).to_bytes()[:5].hex() == "8420008810"


@pytest.mark.parametrize("build", [lambda: apdu.read_wallet(8), lambda: apdu.read_log(0),
                                   lambda: apdu.read_log(11), lambda: apdu.get_data(0x9F36),
                                   lambda: apdu.mutual_authenticate(3, b""), lambda: apdu.verify(bytes(8)),
                                   lambda: apdu.ReserveRequest(8, 19, 1, 0, bytes(16)),
                                   lambda: apdu.ReserveRequest(0, 1000, 1, 0, bytes(16)),
                                   lambda: apdu.ReserveRequest(0, 19, 0, 0, bytes(16)),
                                   lambda: apdu.ReserveRequest(0, 19, 1, 0, bytes(15)),
                                   lambda: apdu.InitLoadRequest(0, 0),
                                   lambda: apdu.ScriptRequest(bytes(16), bytes(16)),
                                   lambda: apdu.Command(0, 0, 0, 0, bytes(256)).to_bytes(),
                                   lambda: pw.Wallet(0, Unit.MONEY, 0, ((5, 4),), 20270101),
                                   lambda: pw.Wallet(0, Unit.MONEY, 0, (), 20270230),
                                   lambda: pw.Wallet(0, Unit.MONEY, 0, (), 20270101, month=202713)])
def test_out_of_range_fields_are_refused(build: object) -> None:
    with pytest.raises(pw.PurseDataError):
        build()  # type: ignore[operator]


def test_log_entry_reads_a_signed_record() -> None:
    record = PurchaseRecord(key_version=1, kind=Kind.LOAD, card_id=bytes(8), wallet=1, counter=3, amount=500,
                            unit=Unit.VOLUME, product=0, terminal=bytes(8), time=5, previous_balance=1,
                            new_balance=501)
    key = os.urandom(16)
    entry = apdu.LogEntry.decode(sign(key, record))
    assert entry.record == record and entry.signed == sign(key, record)
    assert entry.verified(key) == record
    bad = bytearray(sign(key, record))
    bad[3] = 9                                                       # an unknown kind
    with pytest.raises(pw.PurseDataError) as info:
        apdu.LogEntry.decode(bytes(bad))
    assert (info.value.reason, info.value.context["fault"]) == ("record", "kind")


def test_status_words() -> None:
    assert apdu.split_response(bytes.fromhex("01029000")) == (b"\x01\x02", 0x9000)
    assert pw.Refusal.of(0x63C2) is pw.Refusal.WRONG_PIN and pw.Refusal.of(0x9406) is pw.Refusal.PENDING
    assert pw.Refusal.of(0x9000) is None and pw.Refusal.of(0x6A82) is None
    assert all(r >> 12 in (6, 9) for r in pw.Refusal)
    with pytest.raises(pw.PurseDataError):
        apdu.split_response(b"\x90")


def test_fci_of_another_application_is_refused() -> None:
    info = pw.PurseInfo(bytes(8), pw.Status.ACTIVE, 0, pw.KeyVersions(1, 1, 1, 1), 0, 3, 1, None)
    raw = bytearray(apdu.fci(info))
    raw[4] ^= 1                                                      # the AID
    with pytest.raises(pw.PurseDataError) as err:
        apdu.parse_fci(bytes(raw))
    assert err.value.reason == "aid"
    with pytest.raises(pw.PurseDataError):
        apdu.parse_fci(apdu.fci(info) + b"\x00")
