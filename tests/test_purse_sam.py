"""The simulated purse SAM through its APDUs: personalisation, the handshake with a card side made of
contracts.purse_session's card functions, secure messaging, the enciphered PIN, MAC RECORD and refusals."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import purse_sam_apdu as sa
from contracts import purse_session as ps
from contracts.purse_keys import Purpose, Unit, derive_card_key, derive_sam_key
from contracts.purse_records import Kind, PurchaseRecord, sign
from contracts.purse_seal import sam_key_context, seal_for_sam
from hostsim.cards.purse_sam import PurseSam
from hostsim.pcscd import VPCD_DRIVER, PcscDaemon
from hostsim.vpcd import VirtualCard, VirtualCardServer

NOW = 1_800_000_000
EXPIRY = NOW + 365 * 86400
CA = ec.generate_private_key(ec.SECP256R1())
OTHER_CA = ec.generate_private_key(ec.SECP256R1())
SAM_MASTER = bytes(range(16))
RECORD_MASTER = bytes(range(16, 32))
SAM_ID = bytes.fromhex("5341000000000001")
CARD_ID = bytes.fromhex("7077000000000019")
CARD_KEY = ec.generate_private_key(ec.SECP256R1())
CARD_CERT = ps.issue_certificate(CA, ps.Certificate(ps.Role.CARD, CARD_ID, 1, EXPIRY,
                                                    ps.public_bytes(CARD_KEY)))
OK = 0x9000


def send(sam: PurseSam, apdu: bytes) -> tuple[bytes, int]:
    return sa.split_answer(sam.apdu(apdu))


def ok(sam: PurseSam, apdu: bytes) -> bytes:
    data, sw = send(sam, apdu)
    assert sw == OK, hex(sw)
    return data


def sam_cert(public: bytes, *, sam_id: bytes = SAM_ID, role: ps.Role = ps.Role.SAM, expiry: int = EXPIRY,
             ca: ec.EllipticCurvePrivateKey = CA) -> bytes:
    return ps.issue_certificate(ca, ps.Certificate(role, sam_id, 1, expiry, public))


def personalize(sam: PurseSam, *, version: int = 1, expiry: int = EXPIRY) -> bytes:
    """Provisioning as the issuer does it; returns the SAM's MAC key (the issuer's copy)."""
    assert sa.parse_fci(ok(sam, sa.select())).state is sa.SamState.BLANK
    public = ok(sam, sa.generate_key_pair())
    ok(sam, sa.put_certificate(sam_cert(public, expiry=expiry), ps.public_bytes(CA)))
    key = derive_sam_key(SAM_MASTER, SAM_ID, version=version)
    ok(sam, sa.put_sam_key(version, seal_for_sam(public, key, context=sam_key_context(SAM_ID, version))))
    return key


@dataclass
class Linked:
    sam: PurseSam
    card: ps.Session
    sam_key: bytes


def authenticate(sam: PurseSam, card_key: ec.EllipticCurvePrivateKey = CARD_KEY,
                 card_cert: bytes = CARD_CERT) -> ps.Session:
    hello = ok(sam, sa.auth_hello(NOW))
    card_hs, answer = ps.card_answer(card_key, card_cert, CA.public_key(), hello)
    assert card_hs.time == NOW and card_hs.sam.id == SAM_ID
    proof, card_id = sa.parse_proof(ok(sam, sa.auth_proof(answer)))
    assert card_id == CARD_ID
    card, confirm = ps.card_finish(card_hs, proof)
    ok(sam, sa.auth_confirm(confirm))
    return card


def linked() -> Linked:
    sam = PurseSam(SAM_ID)
    key = personalize(sam)
    return Linked(sam, authenticate(sam), key)


def test_personalisation_steps_show_in_select() -> None:
    sam: VirtualCard = PurseSam(SAM_ID)
    assert isinstance(sam, PurseSam)
    personalize(sam)
    info = sa.parse_fci(ok(sam, sa.select()))
    assert info == sa.SamInfo(SAM_ID, sa.SamState.PERSONALIZED, 1)
    assert "PERSONALIZED" in repr(sam) and SAM_MASTER.hex() not in repr(sam)


def test_whole_handshake_wrap_unwrap_and_pin() -> None:
    link = linked()
    assert link.sam.session_open
    apdu = ok(link.sam, sa.wrap(0x84, 0x30, 0x00, 0x00, b"reserve this"))
    assert apdu[0] == 0x84 and ps.unwrap_command(link.card, apdu) == (0x30, 0, 0, b"reserve this")
    answer = ps.wrap_response(link.card, b"reserved", b"\x90\x00")
    assert sa.parse_unwrapped(ok(link.sam, sa.unwrap(answer))) == (b"reserved", OK)
    verify = ok(link.sam, sa.encipher_pin("4321"))
    ins, p1, p2, block = ps.unwrap_command(link.card, verify)
    assert (ins, p1, p2) == (0x20, 0x00, 0x88) and ps.decipher_pin(link.card, block) == "4321"
    warning = ps.wrap_response(link.card, b"", b"\x63\xc2")       # a wrong PIN comes MACed
    assert sa.parse_unwrapped(ok(link.sam, sa.unwrap(warning))) == (b"", 0x63C2)


def test_not_personalized_sam_refuses_the_session() -> None:
    sam = PurseSam(SAM_ID)
    assert send(sam, sa.auth_hello(NOW))[1] == 0x6985                  # not selected yet
    ok(sam, sa.select())
    for command in (sa.auth_hello(NOW), sa.auth_proof(bytes(ps.ANSWER_LEN))):
        assert send(sam, command)[1] == 0x6985
    public = ok(sam, sa.generate_key_pair())
    assert send(sam, sa.generate_key_pair())[1] == 0x6985              # the key pair is made once
    ok(sam, sa.put_certificate(sam_cert(public), ps.public_bytes(CA)))
    assert send(sam, sa.auth_hello(NOW))[1] == 0x6985                  # no SAM key yet
    assert send(sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6982


@pytest.mark.parametrize("why", ["other_ca", "other_id", "other_key", "card_role", "ca_changed"])
def test_bad_certificates_are_refused(why: str) -> None:
    sam = PurseSam(SAM_ID)
    ok(sam, sa.select())
    public = ok(sam, sa.generate_key_pair())
    ca_raw = ps.public_bytes(CA)
    if why == "other_ca":
        cert = sam_cert(public, ca=OTHER_CA)
    elif why == "other_id":
        cert = sam_cert(public, sam_id=bytes(8))
    elif why == "other_key":
        cert = sam_cert(ps.public_bytes(ec.generate_private_key(ec.SECP256R1())))
    elif why == "card_role":
        cert = sam_cert(public, role=ps.Role.CARD)
    else:
        ok(sam, sa.put_certificate(sam_cert(public), ca_raw))
        cert, ca_raw = sam_cert(public, ca=OTHER_CA), ps.public_bytes(OTHER_CA)
    assert send(sam, sa.put_certificate(cert, ca_raw))[1] == 0x6A80


def test_sam_key_box_must_be_for_this_sam_and_version() -> None:
    sam = PurseSam(SAM_ID)
    ok(sam, sa.select())
    public = ok(sam, sa.generate_key_pair())
    ok(sam, sa.put_certificate(sam_cert(public), ps.public_bytes(CA)))
    key = derive_sam_key(SAM_MASTER, SAM_ID, version=2)
    for box in (seal_for_sam(public, key, context=sam_key_context(bytes(8), 2)),
                seal_for_sam(public, key, context=sam_key_context(SAM_ID, 3)),
                seal_for_sam(ec.generate_private_key(ec.SECP256R1()).public_key(), key,
                             context=sam_key_context(SAM_ID, 2))):
        assert send(sam, sa.put_sam_key(2, box))[1] == 0x6A80
    ok(sam, sa.put_sam_key(2, seal_for_sam(public, key, context=sam_key_context(SAM_ID, 2))))
    older = derive_sam_key(SAM_MASTER, SAM_ID, version=1)
    box = seal_for_sam(public, older, context=sam_key_context(SAM_ID, 1))
    assert send(sam, sa.put_sam_key(1, box))[1] == 0x6985              # no going back


def test_foreign_card_and_bad_confirm_fail_authentication() -> None:
    sam = PurseSam(SAM_ID)
    personalize(sam)
    stranger = ps.issue_certificate(OTHER_CA, ps.Certificate(ps.Role.CARD, CARD_ID, 1, EXPIRY,
                                                              ps.public_bytes(CARD_KEY)))
    hello = ok(sam, sa.auth_hello(NOW))
    _, answer = ps.card_answer(CARD_KEY, stranger, CA.public_key(), hello)
    assert send(sam, sa.auth_proof(answer))[1] == 0x6300
    assert send(sam, sa.auth_proof(answer))[1] == 0x6985               # one answer per hello
    hello = ok(sam, sa.auth_hello(NOW))
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    proof, _ = sa.parse_proof(ok(sam, sa.auth_proof(answer)))
    assert send(sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6982      # not confirmed yet
    _, confirm = ps.card_finish(card_hs, proof)
    assert send(sam, sa.auth_confirm(bytes(16)))[1] == 0x6300
    assert send(sam, sa.auth_confirm(confirm))[1] == 0x6985             # that session is gone


def test_expired_sam_certificate_starts_no_session() -> None:
    sam = PurseSam(SAM_ID)
    personalize(sam, expiry=NOW - 1)
    assert send(sam, sa.auth_hello(NOW))[1] == 0x6985


def test_replayed_or_tampered_sm_answer_closes_the_session() -> None:
    link = linked()
    ps.unwrap_command(link.card, ok(link.sam, sa.wrap(0x84, 0x30, 0, 0, b"one")))
    answer = ps.wrap_response(link.card, b"first", b"\x90\x00")
    ok(link.sam, sa.unwrap(answer))
    ps.unwrap_command(link.card, ok(link.sam, sa.wrap(0x84, 0x32, 0, 0, b"two")))
    assert send(link.sam, sa.unwrap(answer))[1] == 0x6988              # the old answer again
    assert not link.sam.session_open
    assert send(link.sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6982
    link = linked()
    ps.unwrap_command(link.card, ok(link.sam, sa.wrap(0x84, 0x30, 0, 0, b"one")))
    assert sa.parse_unwrapped(ok(link.sam, sa.unwrap(ps.wrap_response(link.card, b"", b"\x90\x00"))))[1] == OK
    ps.unwrap_command(link.card, ok(link.sam, sa.wrap(0x84, 0x30, 0, 0, b"one")))
    answer = bytearray(ps.wrap_response(link.card, b"first", b"\x90\x00"))
    answer[0] ^= 1
    assert send(link.sam, sa.unwrap(bytes(answer)))[1] == 0x6988


def test_bare_card_error_passes_and_closes_the_session() -> None:
    link = linked()
    ok(link.sam, sa.wrap(0x84, 0x30, 0, 0, b"x"))
    assert sa.parse_unwrapped(ok(link.sam, sa.unwrap(b"\x69\x88"))) == (b"", 0x6988)
    assert send(link.sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6982


def test_reset_drops_the_session_but_keeps_keys_and_sequence() -> None:
    link = linked()
    link.sam.apdu(sa.mac_record(card_record(counter=1)))
    link.sam.reset()
    assert send(link.sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6985  # deselected
    ok(link.sam, sa.select())
    assert send(link.sam, sa.wrap(0x84, 0x30, 0, 0, b""))[1] == 0x6982
    link.sam.power_off()
    link.sam.power_on()
    ok(link.sam, sa.select())
    assert sa.parse_sequence(ok(link.sam, sa.get_sequence())) == 1
    authenticate(link.sam)                                              # personalisation survived
    assert link.sam.session_open


def card_record(*, counter: int, card_id: bytes = CARD_ID, load: bool = False) -> bytes:
    record = PurchaseRecord(key_version=1, kind=Kind.LOAD if load else Kind.PURCHASE, card_id=card_id,
                            wallet=0, counter=counter, amount=3318, unit=Unit.MONEY,
                            product=0 if load else 19, terminal=SAM_ID, time=NOW, previous_balance=10000,
                            new_balance=13318 if load else 6682)
    return sign(derive_card_key(RECORD_MASTER, card_id, Purpose.RECORD, version=1), record)


def test_mac_record_sequence() -> None:
    link = linked()
    assert sa.parse_sequence(ok(link.sam, sa.get_sequence())) == 0
    macs = []
    for counter in (1, 2, 3):
        signed = card_record(counter=counter)
        sequence, tag = sa.parse_record_mac(ok(link.sam, sa.mac_record(signed)))
        assert sequence == counter
        assert sa.verify_sam_record_mac(link.sam_key, signed, sequence, tag)      # as the issuer checks
        assert not sa.verify_sam_record_mac(link.sam_key, signed, sequence + 1, tag)
        macs.append(tag)
    signed = card_record(counter=1)
    again, tag = sa.parse_record_mac(ok(link.sam, sa.mac_record(signed)))       # a resend: a new sequence
    assert again == 4 and tag != macs[0]
    load = card_record(counter=5, load=True)                                    # loads in the log too
    sequence, tag = sa.parse_record_mac(ok(link.sam, sa.mac_record(load)))
    assert sequence == 5 and sa.verify_sam_record_mac(link.sam_key, load, 5, tag)
    assert sa.parse_sequence(ok(link.sam, sa.get_sequence())) == 5


def test_mac_record_refusals() -> None:
    link = linked()
    assert send(link.sam, sa.mac_record(card_record(counter=1, card_id=bytes(8))))[1] == 0x6A80
    malformed = bytearray(card_record(counter=1))
    malformed[0] = 0x51
    assert send(link.sam, sa.mac_record(bytes(malformed)))[1] == 0x6A80
    sam = PurseSam(SAM_ID)
    personalize(sam)
    assert send(sam, sa.mac_record(card_record(counter=1)))[1] == 0x6982          # no session
    assert sa.parse_sequence(ok(sam, sa.get_sequence())) == 0


def test_malformed_commands() -> None:
    link = linked()
    assert link.sam.apdu(b"\x80\x56") == b"\x67\x00"
    assert send(link.sam, b"\x90\x56\x00\x00\x00")[1] == 0x6E00
    assert send(link.sam, b"\x80\x99\x00\x00\x00")[1] == 0x6D00
    assert send(link.sam, b"\x80\x5e\x01\x00\x00")[1] == 0x6A86
    assert send(link.sam, b"\x80\x50\x00\x00\x03\x00\x00\x00\x00")[1] == 0x6700    # a time is 4 bytes
    assert send(link.sam, sa.wrap(0x00, 0x20, 0, 0, b""))[1] == 0x6A80               # not CLA 80/84
    assert send(link.sam, b"\x00\xa4\x04\x00\x08" + bytes(8))[1] == 0x6A82
    with pytest.raises(sa.SamApduError):
        sa.wrap(0x84, 0x30, 0, 0, bytes(sa.MAX_WRAP + 1))
    with pytest.raises(sa.SamApduError):
        sa.encipher_pin("12")


def test_doctests() -> None:
    import doctest
    assert doctest.testmod(sa).failed == 0


def _drive_through(reader: Any) -> None:
    """Personalise and run a session through a reader (the terminal's seam), WRAP's longest answer too."""
    reader.connect()

    def send_r(apdu: bytes) -> tuple[bytes, int]:
        return sa.split_answer(reader.transmit(apdu))

    assert send_r(sa.select())[1] == OK
    public, _ = send_r(sa.generate_key_pair())
    assert send_r(sa.put_certificate(sam_cert(public), ps.public_bytes(CA)))[1] == OK
    key = derive_sam_key(SAM_MASTER, SAM_ID, version=1)
    box = seal_for_sam(public, key, context=sam_key_context(SAM_ID, 1))
    assert send_r(sa.put_sam_key(1, box))[1] == OK
    hello, _ = send_r(sa.auth_hello(NOW))
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    proof, sw = send_r(sa.auth_proof(answer))
    card, confirm = ps.card_finish(card_hs, sa.parse_proof(proof)[0])
    assert send_r(sa.auth_confirm(confirm))[1] == OK
    wrapped, sw = send_r(sa.wrap(0x84, 0x30, 0, 0, bytes(sa.MAX_WRAP)))
    assert sw == OK and len(wrapped) == 256
    assert ps.unwrap_command(card, wrapped)[3] == bytes(sa.MAX_WRAP)
    data, sw = send_r(sa.unwrap(ps.wrap_response(card, bytes(sa.MAX_UNWRAP), b"\x90\x00")))
    assert sw == OK and sa.parse_unwrapped(data) == (bytes(sa.MAX_UNWRAP), OK)


def test_served_through_the_memory_reader() -> None:
    from drivers.cardreader.memory import MemoryReader

    _drive_through(MemoryReader(PurseSam(SAM_ID)))


@pytest.mark.system
@pytest.mark.skipif(shutil.which("pcscd") is None or not VPCD_DRIVER.exists(),
                    reason="needs the Debian packages pcscd and vsmartcard-vpcd")
def test_served_in_the_sam_slot_of_pcscd(tmp_path: Path) -> None:
    from drivers.cardreader import PcscReader, open_reader

    with VirtualCardServer() as cards, VirtualCardServer() as sams, \
            PcscDaemon(tmp_path / "state", cards.port, sam_port=sams.port) as daemon:
        sams.insert(PurseSam(SAM_ID))
        assert daemon.sam_reader_name is not None
        reader = open_reader("pcsc://" + daemon.sam_reader_name.replace(" ", "%20"))
        assert isinstance(reader, PcscReader)
        try:
            assert reader.wait_for_card(5)
            _drive_through(reader)
        finally:
            reader.close()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_their_error(raw: bytes) -> None:
    for parse in (sa.parse_fci, sa.parse_proof, sa.parse_record_mac, sa.parse_unwrapped, sa.parse_wrap,
                  sa.split_answer, sa.parse_put_certificate, sa.parse_time, sa.parse_sequence):
        try:
            parse(raw)
        except sa.SamApduError:
            pass


FUZZ_SAM = linked()


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted({0x00, 0x80, 0x84})), st.sampled_from([0xA4, *range(0x40, 0x60, 2)]),
       st.binary(max_size=2), st.binary(max_size=260))
def test_the_sam_answers_any_apdu_with_a_status_word(cla: int, ins: int, p1p2: bytes, tail: bytes) -> None:
    answer = FUZZ_SAM.sam.apdu(bytes([cla, ins]) + p1p2.ljust(2, b"\x00") + tail)
    assert len(answer) >= 2 and answer[-2] in (0x90, 0x63, 0x67, 0x69, 0x6A, 0x6D, 0x6E)
