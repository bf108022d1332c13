"""The fleet card's purse through its APDUs (hostsim/cards/purse.py, purse_card.py), against a terminal and
SAM played in this file with the SAM side of contracts.purse_session and a test issuer CA."""

from __future__ import annotations

import os
import socket
import struct
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts.purse_apdu as apdu
import contracts.purse_sam_apdu as sa
from contracts.errors import CardRemoved, ConfigError
from contracts.purse_keys import (
    AdminOp,
    Purpose,
    Unit,
    admin_message,
    derive_card_key,
    derive_sam_key,
    init_load_message,
    load_message,
    mac,
    verify_mac,
)
from contracts.purse_records import Kind, PurchaseRecord
from contracts.purse_seal import sam_key_context, seal_for_sam
from contracts.purse_session import (
    Certificate,
    Role,
    Session,
    encipher_pin,
    issue_certificate,
    public_bytes,
    sam_confirm,
    sam_hello,
    sam_proof,
    unwrap_response,
    wrap_command,
)
from contracts.purse_wallets import PurseInfo, Refusal, Status, Wallet
from hostsim.cards.fleet import FLEET_AID, FleetCard
from hostsim.cards.purse_card import PurseCard, personalize
from hostsim.cards.purse_sam import PurseSam
from hostsim.cards.purse_state import CardTorn, Cmd, Tear
from hostsim.vpcd import VirtualCardServer, recv_frame, send_frame

CARD_ID = bytes.fromhex("7077000000000042")
SAM_A = bytes.fromhex("5A4D000000000001")
SAM_B = bytes.fromhex("5A4D000000000002")
T0 = 1_800_000_000
EXPIRY = T0 + 5 * 365 * 86_400
PIN = "2468"
CA = ec.generate_private_key(ec.SECP256R1())
MASTERS = {p: os.urandom(16) for p in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN)}
OK = 0x9000


def issuer_key(purpose: Purpose) -> bytes:
    """What the issuer derives from its master for this card (the card was given the same at issue)."""
    return derive_card_key(MASTERS[purpose], CARD_ID, purpose, version=1)


def make_card(on_tear: object = None) -> PurseCard:
    wallets = [Wallet(number=0, unit=Unit.VOLUME, balance=20_000, products=((19, 19),), expiry=20291231,
                      day_limit=15_000),
               Wallet(number=1, unit=Unit.MONEY, balance=5_000, products=((1, 99), (400, 599)),
                      expiry=20291231)]
    return personalize(
        FleetCard("7077001234567890", "2912", "A DRIVER"), purse_id=CARD_ID,
        keys={(p, 1): issuer_key(p) for p in MASTERS}, pin=PIN, wallets=wallets,
        ca_public_key=CA.public_key(),
        certify=lambda key: issue_certificate(CA, Certificate(Role.CARD, CARD_ID, 1, EXPIRY, key)),
        on_tear=on_tear)  # type: ignore[arg-type]


class Link(Protocol):
    def apdu(self, command: bytes) -> bytes: ...


class Terminal:
    """The terminal and its SAM in one: the SAM's side of the handshake and of secure messaging."""

    def __init__(self, card: Link, sam_id: bytes = SAM_A, ca: ec.EllipticCurvePrivateKey = CA) -> None:
        self.card = card
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = issue_certificate(ca, Certificate(Role.SAM, sam_id, 1, EXPIRY, public_bytes(self.key)))
        self.session: Session | None = None

    def send(self, command: apdu.Command) -> tuple[bytes, int]:
        return apdu.split_response(self.card.apdu(command.to_bytes()))

    def select(self) -> PurseInfo:
        data, sw = self.send(apdu.select())
        assert sw in (OK, apdu.SW_BLOCKED)
        return apdu.parse_fci(data)

    def open(self, time: int = T0, *, pin: str | None = PIN) -> int:
        """SELECT, MUTUAL AUTHENTICATE and (if pin) VERIFY; the last status word."""
        self.select()
        handshake, hello = sam_hello(self.cert, time)
        answer, sw = self.send(apdu.mutual_authenticate(1, hello))
        if sw != OK:
            return sw
        session, proof = sam_proof(handshake, self.key, CA.public_key(), answer)
        confirm, sw = self.send(apdu.mutual_authenticate(2, proof))
        if sw != OK:
            return sw
        sam_confirm(session, confirm)
        self.session = session
        return self.verify(pin) if pin else sw

    def secure(self, command: apdu.Command) -> tuple[bytes, int]:
        assert self.session is not None and command.secure
        wrapped = wrap_command(self.session, command.cla, command.ins, command.p1, command.p2, command.data)
        data, sw = unwrap_response(self.session, self.card.apdu(wrapped))
        return data, int.from_bytes(sw, "big")

    def verify(self, pin: str) -> int:
        assert self.session is not None
        return self.secure(apdu.verify(encipher_pin(self.session, pin)))[1]

    def reserve(self, amount: int, *, wallet: int = 0, product: int = 19,
                time: int = T0) -> tuple[bytes, int]:
        request = apdu.ReserveRequest(wallet, product, amount, time, os.urandom(16))
        return self.secure(apdu.reserve(request))

    def script(self, op: AdminOp, payload: bytes = b"") -> tuple[bytes, int]:
        counter = int.from_bytes(self.send(apdu.get_data(apdu.TAG_COUNTER))[0][3:], "big")
        message = admin_message(CARD_ID, key_version=1, counter=counter, op=op, payload=payload)
        return self.secure(apdu.apply_script(apdu.ScriptRequest(message, mac(issuer_key(Purpose.ADMIN),
                                                                             message))))


def record_of(signed: bytes) -> PurchaseRecord:
    """The issuer's check: the MAC under the RECORD key it derives from its master."""
    return apdu.LogEntry.decode(signed).verified(issuer_key(Purpose.RECORD))


def test_select_read_and_get_data_in_the_clear() -> None:
    terminal = Terminal(make_card())
    info = terminal.select()
    assert (info.purse_id, info.status, info.counter, info.wallet_count, info.pin_tries) == (
        CARD_ID, Status.ACTIVE, 0, 2, 3)
    data, sw = terminal.send(apdu.read_wallet(1))
    assert sw == OK and Wallet.decode(data).products == ((1, 99), (400, 599))
    assert terminal.send(apdu.read_wallet(2))[1] == 0x6A83 and terminal.send(apdu.read_log(1))[1] == 0x6A83
    assert terminal.send(apdu.get_data(apdu.TAG_COUNTER)) == (bytes.fromhex("DF010400000000"), OK)
    assert terminal.send(apdu.get_data(apdu.TAG_PIN_TRIES)) == (bytes.fromhex("9F170103"), OK)
    assert terminal.send(apdu.Command(0, 0xCA, 0x9F, 0x36))[1] == 0x6A88
    assert terminal.send(apdu.Command(0, 0xB2, 1, (3 << 3) | 4))[1] == 0x6A82
    assert terminal.card.apdu(b"\x00\xa4") == b"\x67\x00"


def test_the_fleet_applet_answers_beside_the_purse() -> None:
    card = make_card()
    select_fleet = bytes([0, 0xA4, 4, 0, len(FLEET_AID)]) + FLEET_AID + b"\x00"
    assert card.apdu(select_fleet)[-2:] == b"\x90\x00"
    assert card.apdu(bytes.fromhex("00B2010C00"))[-2:] == b"\x90\x00"
    terminal = Terminal(card)
    assert terminal.open() == OK
    assert card.apdu(select_fleet)[-2:] == b"\x90\x00" and not card.purse.authenticated
    assert "7077001234567890" not in repr(card)


def test_secure_commands_need_a_session_and_a_good_mac() -> None:
    card = make_card()
    terminal = Terminal(card)
    terminal.select()
    wrapped = bytes.fromhex("8430000008") + bytes(8)
    assert card.apdu(wrapped) == b"\x69\x82"                        # no session: bare
    assert terminal.open() == OK
    assert terminal.session is not None
    tampered = bytearray(wrap_command(terminal.session, 0x84, apdu.INS_SETTLE, 0, 0, bytes(8)))
    tampered[-1] ^= 1
    assert card.apdu(bytes(tampered)) == b"\x69\x88" and not card.purse.authenticated
    terminal.session = None
    assert terminal.open() == OK                                     # a new session works
    card.reset()
    terminal.select()
    assert card.apdu(wrapped) == b"\x69\x82"                          # reset forgot the keys


def test_mutual_authentication_refusals() -> None:
    card = make_card()
    other_ca = ec.generate_private_key(ec.SECP256R1())
    assert Terminal(card, ca=other_ca).open() == 0x6300               # a SAM the issuer did not certify
    terminal = Terminal(card)
    terminal.select()
    assert terminal.send(apdu.mutual_authenticate(2, bytes(64)))[1] == 0x6985
    assert terminal.open(time=T0 + 100) == OK
    assert terminal.reserve(1_000, time=T0 + 100)[1] == OK
    assert Terminal(card).open(time=T0 + 99) == Refusal.TIME          # a clock behind the last transaction


def test_offline_pin_wrong_right_blocked() -> None:
    card = make_card()
    terminal = Terminal(card)
    assert terminal.open(pin=None) == OK
    assert terminal.reserve(1_000)[1] == Refusal.SECURITY             # no PIN yet: 6982, MACed
    assert terminal.verify("1111") == 0x63C2
    assert terminal.verify(PIN) == OK and terminal.select().pin_tries == 3
    assert terminal.open(pin=None) == OK
    assert [terminal.verify("1111") for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert terminal.verify(PIN) == Refusal.PIN_BLOCKED
    assert terminal.script(AdminOp.RESET_PIN_TRIES)[1] == OK          # the issuer unblocks it online
    assert terminal.verify(PIN) == OK


def test_reserve_settle_gives_a_record_the_issuer_verifies() -> None:
    terminal = Terminal(make_card())
    assert terminal.open() == OK
    data, sw = terminal.reserve(25_000)
    answer = apdu.ReserveAnswer.decode(data)
    assert sw == OK and (answer.reserved, answer.counter) == (15_000, 1)   # the day limit binds
    assert terminal.reserve(100)[1] == Refusal.PENDING
    signed, sw = terminal.secure(apdu.settle(apdu.SettleRequest(1, 4_321)))
    record = record_of(signed)
    assert sw == OK and (record.kind, record.amount, record.unit, record.terminal) == (
        Kind.PURCHASE, 4_321, Unit.VOLUME, SAM_A)
    assert (record.previous_balance, record.new_balance, record.card_id) == (20_000, 15_679, CARD_ID)
    assert terminal.send(apdu.read_log(1)) == (signed, OK)
    assert terminal.reserve(20_000)[0] == apdu.ReserveAnswer(10_679, 2).encode()
    assert terminal.reserve(1, wallet=1, product=19)[1] == Refusal.PENDING


def test_card_pulled_after_settle_committed_leaves_the_record_in_the_log() -> None:
    pulled: list[bool] = []
    card = make_card(on_tear=lambda: pulled.append(True))
    terminal = Terminal(card)
    assert terminal.open() == OK
    terminal.reserve(5_000)
    card.tear_at(Cmd.SETTLE, Tear.AFTER_COMMIT)
    assert terminal.session is not None
    settle = apdu.settle(apdu.SettleRequest(1, 3_000))
    assert card.apdu(wrap_command(terminal.session, 0x84, settle.ins, 0, 0, settle.data)) == b""   # no answer
    assert pulled == [True] and not card.purse.authenticated
    info = Terminal(card, SAM_B).select()                             # the next insertion, anywhere
    assert info.pending is None and info.counter == 1
    record = record_of(Terminal(card).send(apdu.read_log(1))[0])
    assert (record.counter, record.amount, record.kind) == (1, 3_000, Kind.PURCHASE)


def test_card_pulled_before_settle_is_completed_once() -> None:
    card = make_card()
    terminal = Terminal(card)
    assert terminal.open() == OK
    terminal.reserve(5_000)
    card.tear_at(Cmd.SETTLE, Tear.BEFORE_COMMIT)
    with pytest.raises(CardTorn):
        terminal.secure(apdu.settle(apdu.SettleRequest(1, 3_000)))
    elsewhere = Terminal(card, SAM_B)
    assert elsewhere.open(time=T0 + 60, pin=None) == OK
    pending = elsewhere.select().pending
    assert pending is not None and (pending.counter, pending.reserved, pending.sam_id) == (1, 5_000, SAM_A)
    assert elsewhere.open(time=T0 + 60, pin=None) == OK
    final = apdu.complete_pending(apdu.CompleteRequest(1, 3_000))
    assert elsewhere.secure(final)[1] == Refusal.TOO_EARLY            # only the reserving SAM has the figure
    assert terminal.open(time=T0 + 120, pin=None) == OK
    signed, sw = terminal.secure(final)
    assert sw == OK and record_of(signed).kind is Kind.RECOVERED and record_of(signed).amount == 3_000
    assert terminal.secure(final)[1] == Refusal.NO_PENDING           # never twice
    assert terminal.select().counter == 1


def test_load_with_the_issuers_mac_and_its_replays() -> None:
    terminal = Terminal(make_card())
    assert terminal.open(pin=None) == OK
    data, sw = terminal.secure(apdu.initialize_load(apdu.InitLoadRequest(wallet=1, amount=2_000)))
    init = apdu.InitLoadAnswer.decode(data)
    asked = init_load_message(CARD_ID, key_version=init.key_version, wallet=1, counter=init.counter,
                              amount=2_000, unit=init.unit, balance=init.balance)
    assert sw == OK and verify_mac(issuer_key(Purpose.AUTH), asked, init.mac)   # the issuer's check

    def issuer_load(counter: int, amount: int = 2_000) -> apdu.LoadRequest:
        load_id = os.urandom(16)
        message = load_message(CARD_ID, key_version=1, wallet=1, counter=counter, amount=amount,
                               unit=Unit.MONEY, load_id=load_id)
        return apdu.LoadRequest(1, 1, amount, load_id, mac(issuer_key(Purpose.LOAD), message))

    good = issuer_load(init.counter)
    signed, sw = terminal.secure(apdu.load(good))
    record = record_of(signed)
    assert sw == OK and (record.kind, record.amount, record.new_balance, record.counter) == (
        Kind.LOAD, 2_000, 7_000, 1)
    assert terminal.secure(apdu.load(good))[1] == Refusal.AUTH_FAILED          # replayed
    assert terminal.secure(apdu.load(issuer_load(5)))[1] == Refusal.AUTH_FAILED   # another counter
    forged = apdu.LoadRequest(1, 1, 9_000, good.load_id, good.mac)
    assert terminal.secure(apdu.load(forged))[1] == Refusal.AUTH_FAILED
    assert Wallet.decode(terminal.send(apdu.read_wallet(1))[0]).balance == 7_000


def test_scripts_block_and_unblock_the_purse() -> None:
    terminal = Terminal(make_card())
    assert terminal.open() == OK
    assert terminal.script(AdminOp.BLOCK) == (b"", OK)
    assert terminal.send(apdu.select())[1] == apdu.SW_BLOCKED
    assert terminal.open() == OK                                      # a blocked purse still authenticates
    assert terminal.reserve(1_000)[1] == Refusal.BLOCKED
    assert terminal.script(AdminOp.UNBLOCK)[1] == OK
    assert terminal.script(AdminOp.SET_LIMITS, struct.pack(">BII", 0, 700, 0))[1] == OK
    assert terminal.reserve(1_000)[0] == apdu.ReserveAnswer(700, 4).encode()
    message = admin_message(CARD_ID, key_version=1, counter=0, op=AdminOp.BLOCK)
    stale = apdu.ScriptRequest(message, mac(issuer_key(Purpose.ADMIN), message))
    assert terminal.secure(apdu.apply_script(stale))[1] == Refusal.AUTH_FAILED


def test_malformed_secure_commands_answer_typed_status_words() -> None:
    terminal = Terminal(make_card())
    assert terminal.open() == OK
    assert terminal.secure(apdu.Command(0x84, apdu.INS_RESERVE, 0, 0, b"\x00"))[1] == 0x6A80
    assert terminal.secure(apdu.Command(0x84, apdu.INS_SETTLE, 1, 0, bytes(8)))[1] == 0x6A86
    assert terminal.secure(apdu.Command(0x84, 0x50, 0, 0, b""))[1] == 0x6D00
    assert terminal.secure(apdu.Command(0x84, apdu.INS_VERIFY, 0, 0x88, bytes(16)))[1] == 0x6A80


class Reader:
    """The reader's side of the vpcd wire (hostsim/vpcd.py) to a VirtualCardServer on loopback."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def apdu(self, command: bytes) -> bytes:
        send_frame(self.sock, command)
        answer = recv_frame(self.sock)
        if answer is None:
            raise CardRemoved("no answer: the card left the reader")
        return answer


def test_a_torn_command_through_the_virtual_card_server_sends_no_answer() -> None:
    with VirtualCardServer() as server:
        card = make_card()
        card.on_tear = server.remove
        server.insert(card)
        reader = Reader(server.port)
        terminal = Terminal(reader)
        assert terminal.open() == OK
        terminal.reserve(5_000)
        card.tear_at(Cmd.SETTLE, Tear.AFTER_COMMIT)
        with pytest.raises(CardRemoved):
            terminal.secure(apdu.settle(apdu.SettleRequest(1, 2_500)))
        reader.sock.close()
        assert server.card is None
        server.insert(card)
        second = Reader(server.port)
        again = Terminal(second)
        info = again.select()
        assert info.pending is None and info.counter == 1
        assert record_of(again.send(apdu.read_log(1))[0]).amount == 2_500
        second.sock.close()


def test_a_purchase_driven_through_the_simulated_sam() -> None:
    """The terminal's real path: the SAM application makes the hello and the proof, wraps, unwraps,
    enciphers the PIN and MACs the record; the card answers through its APDUs."""
    sam = PurseSam(SAM_A)

    def to_sam(command: bytes) -> bytes:
        data, sw = sa.split_answer(sam.apdu(command))
        assert sw == OK, hex(sw)
        return data

    to_sam(sa.select())
    public = to_sam(sa.generate_key_pair())
    to_sam(sa.put_certificate(issue_certificate(CA, Certificate(Role.SAM, SAM_A, 1, EXPIRY, public)),
                              public_bytes(CA)))
    sam_key = derive_sam_key(os.urandom(16), SAM_A, version=1)
    to_sam(sa.put_sam_key(1, seal_for_sam(public, sam_key, context=sam_key_context(SAM_A, 1))))
    card = make_card()

    def to_card(command: apdu.Command) -> tuple[bytes, int]:
        wrapped = to_sam(sa.wrap(command.cla, command.ins, command.p1, command.p2, command.data))
        return sa.parse_unwrapped(to_sam(sa.unwrap(card.apdu(wrapped))))

    assert card.apdu(apdu.select().to_bytes())[-2:] == b"\x90\x00"
    answer = card.apdu(apdu.mutual_authenticate(1, to_sam(sa.auth_hello(T0))).to_bytes())
    proof, card_id = sa.parse_proof(to_sam(sa.auth_proof(answer[:-2])))
    assert card_id == CARD_ID
    confirm = card.apdu(apdu.mutual_authenticate(2, proof).to_bytes())
    to_sam(sa.auth_confirm(confirm[:-2]))
    verify = to_sam(sa.encipher_pin(PIN))
    assert sa.parse_unwrapped(to_sam(sa.unwrap(card.apdu(verify)))) == (b"", OK)
    data, sw = to_card(apdu.reserve(apdu.ReserveRequest(0, 19, 4_000, T0, os.urandom(16))))
    assert sw == OK and apdu.ReserveAnswer.decode(data) == apdu.ReserveAnswer(4_000, 1)
    signed, sw = to_card(apdu.settle(apdu.SettleRequest(1, 3_210)))
    assert sw == OK and record_of(signed).amount == 3_210
    sequence, tag = sa.parse_record_mac(to_sam(sa.mac_record(signed)))
    assert sequence == 1 and sa.verify_sam_record_mac(sam_key, signed, sequence, tag)
    assert to_card(apdu.reserve(apdu.ReserveRequest(0, 400, 1, T0, bytes(16))))[1] == Refusal.PRODUCT


_SECURE_INS = [apdu.INS_VERIFY, apdu.INS_RESERVE, apdu.INS_SETTLE, apdu.INS_COMPLETE_PENDING,
               apdu.INS_INITIALIZE_LOAD, apdu.INS_LOAD, apdu.INS_APPLY_SCRIPT]


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.sampled_from(_SECURE_INS), st.integers(0, 255)), st.integers(0, 255), st.integers(0, 255),
       st.binary(max_size=120), st.binary(min_size=4, max_size=40))
def test_any_command_gets_a_status_word(ins: int, p1: int, p2: int, data: bytes, raw: bytes) -> None:
    """Inside a session any purse command, well wrapped but with any fields, gets a MACed status word;
    any raw bytes in the clear get a status word too."""
    terminal = Terminal(make_card())
    assert terminal.open() == OK
    _, sw = terminal.secure(apdu.Command(0x84, ins, p1, p2, data))
    assert sw >> 8 in (0x90, 0x63, 0x67, 0x69, 0x6A, 0x6D, 0x94)
    answer = terminal.card.apdu(raw)
    assert len(answer) >= 2


def test_personalize_takes_only_a_certificate_for_this_card_and_key() -> None:
    def wrong_id(key: bytes) -> bytes:
        return issue_certificate(CA, Certificate(Role.CARD, SAM_B, 1, EXPIRY, key))

    def wrong_key(key: bytes) -> bytes:
        other = public_bytes(ec.generate_private_key(ec.SECP256R1()))
        return issue_certificate(CA, Certificate(Role.CARD, CARD_ID, 1, EXPIRY, other))

    for certify in (wrong_id, wrong_key):
        with pytest.raises(ConfigError):
            personalize(FleetCard("7077001234567890", "2912", "A DRIVER"), purse_id=CARD_ID,
                        keys={(p, 1): issuer_key(p) for p in MASTERS}, pin=PIN,
                        wallets=[Wallet(0, Unit.MONEY, 1, (), 20291231)], ca_public_key=public_bytes(CA),
                        certify=certify)
    card = make_card()
    text = repr(card) + repr(card.purse) + repr(card.state) + repr(card.state.keys)
    assert PIN not in text and all(issuer_key(p).hex() not in text for p in MASTERS)
