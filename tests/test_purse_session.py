"""The purse's certificates, mutual authentication, session keys, secure messaging and enciphered PIN.

ECDSA and ECDH are cross-checked through `cryptography` directly; the key derivation against the
contracts.purse_keys CMAC and SP 800-108 KDF (themselves tested with RFC 4493 and CAVP vectors).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import purse_session as ps
from contracts.errors import MessageError
from contracts.purse_keys import kdf_counter_cmac, mac

NOW = 1_800_000_000
EXPIRY = NOW + 3 * 365 * 86400
CA = ec.generate_private_key(ec.SECP256R1())
OTHER_CA = ec.generate_private_key(ec.SECP256R1())
SAM_KEY = ec.generate_private_key(ec.SECP256R1())
CARD_KEY = ec.generate_private_key(ec.SECP256R1())
SAM_ID = bytes.fromhex("5341000000000001")
CARD_ID = bytes.fromhex("7077000000000019")


def cert(role: ps.Role, ident: bytes, key: ec.EllipticCurvePrivateKey, *, expiry: int = EXPIRY,
         ca: ec.EllipticCurvePrivateKey = CA) -> bytes:
    return ps.issue_certificate(ca, ps.Certificate(role, ident, 1, expiry, ps.public_bytes(key)))


SAM_CERT = cert(ps.Role.SAM, SAM_ID, SAM_KEY)
CARD_CERT = cert(ps.Role.CARD, CARD_ID, CARD_KEY)


@dataclass
class Run:
    sam_hs: ps.SamHandshake
    hello: bytes
    card_hs: ps.CardHandshake
    answer: bytes
    sam: ps.Session
    proof: bytes
    card: ps.Session
    confirm: bytes


def handshake(sam_cert: bytes = SAM_CERT, card_cert: bytes = CARD_CERT, time: int = NOW) -> Run:
    sam_hs, hello = ps.sam_hello(sam_cert, time)
    card_hs, answer = ps.card_answer(CARD_KEY, card_cert, CA.public_key(), hello)
    sam, proof = ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    card, confirm = ps.card_finish(card_hs, proof)
    ps.sam_confirm(sam, confirm)
    return Run(sam_hs, hello, card_hs, answer, sam, proof, card, confirm)


RUN = handshake()


def flip(raw: bytes, index: int, xor: int) -> bytes:
    return raw[:index] + bytes([raw[index] ^ xor]) + raw[index + 1:]


def raw_verify(public: ec.EllipticCurvePublicKey, message: bytes, sig: bytes) -> None:
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public.verify(der, message, ec.ECDSA(hashes.SHA256()))      # raises if it does not check


# -- certificates ---------------------------------------------------------------------------------------

def test_certificate_round_trip_and_layout() -> None:
    assert len(SAM_CERT) == ps.CERT_LEN == 112
    assert SAM_CERT[:2] == b"\x01\x02" and SAM_CERT[2:10] == SAM_ID and SAM_CERT[10] == 1
    assert struct.unpack(">I", SAM_CERT[11:15])[0] == EXPIRY
    assert SAM_CERT[15:48] == ps.public_bytes(SAM_KEY)
    raw_verify(CA.public_key(), SAM_CERT[:48], SAM_CERT[48:])      # an independent ECDSA check
    opened = ps.open_certificate(CA.public_key(), SAM_CERT, role=ps.Role.SAM, now=NOW)
    assert opened == ps.Certificate(ps.Role.SAM, SAM_ID, 1, EXPIRY, ps.public_bytes(SAM_KEY))
    assert opened.key().public_numbers() == SAM_KEY.public_key().public_numbers()


@pytest.mark.parametrize(("raw", "role", "now", "reason"), [
    (SAM_CERT[:-1], ps.Role.SAM, NOW, "length"),
    (SAM_CERT + b"\x00", ps.Role.SAM, NOW, "length"),
    (b"\x02" + SAM_CERT[1:], ps.Role.SAM, NOW, "format"),
    (SAM_CERT, ps.Role.CARD, NOW, "role"),
    (CARD_CERT, ps.Role.SAM, NOW, "role"),
    (SAM_CERT, ps.Role.SAM, EXPIRY + 1, "expired"),
    (cert(ps.Role.SAM, SAM_ID, SAM_KEY, ca=OTHER_CA), ps.Role.SAM, NOW, "bad_signature"),
])
def test_certificate_refusals(raw: bytes, role: ps.Role, now: int, reason: str) -> None:
    with pytest.raises(ps.CertificateError) as caught:
        ps.open_certificate(CA.public_key(), raw, role=role, now=now)
    assert caught.value.reason == reason
    assert isinstance(caught.value, MessageError)


def test_certificate_valid_through_its_expiry_second() -> None:
    assert ps.open_certificate(CA.public_key(), SAM_CERT, role=ps.Role.SAM, now=EXPIRY).id == SAM_ID


@settings(max_examples=80, deadline=None)
@given(st.integers(1, ps.CERT_LEN - 1), st.integers(1, 255))
def test_any_changed_certificate_byte_breaks_the_signature(index: int, xor: int) -> None:
    with pytest.raises(ps.CertificateError) as caught:
        ps.open_certificate(CA.public_key(), flip(SAM_CERT, index, xor), role=ps.Role.SAM, now=NOW)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("bad", [
    ps.Certificate(ps.Role.CARD, b"\x01" * 7, 1, EXPIRY, ps.public_bytes(CARD_KEY)),
    ps.Certificate(ps.Role.CARD, CARD_ID, 0, EXPIRY, ps.public_bytes(CARD_KEY)),
    ps.Certificate(ps.Role.CARD, CARD_ID, 1, 2**32, ps.public_bytes(CARD_KEY)),
    ps.Certificate(ps.Role.CARD, CARD_ID, 1, EXPIRY, b"\x04" + bytes(32)),
    ps.Certificate(3, CARD_ID, 1, EXPIRY, ps.public_bytes(CARD_KEY)),          # type: ignore[arg-type]
])
def test_issue_refuses_bad_fields(bad: ps.Certificate) -> None:
    with pytest.raises(ps.SessionError):
        ps.issue_certificate(CA, bad)


def test_load_public_key_refuses_points_off_the_curve() -> None:
    with pytest.raises(ps.SessionError) as caught:
        ps.load_public_key(b"\x02" + b"\xff" * 32)          # x >= p: not a field element
    assert caught.value.reason == "bad_key"


# -- handshake ------------------------------------------------------------------------------------------

def test_handshake_message_sizes_fit_short_apdus() -> None:
    sizes = (len(RUN.hello), len(RUN.answer), len(RUN.proof), len(RUN.confirm))
    assert sizes == (ps.HELLO_LEN, ps.ANSWER_LEN, ps.PROOF_LEN, ps.CONFIRM_LEN) == (165, 225, 64, 16)


def test_handshake_both_sides_agree() -> None:
    assert RUN.card_hs.time == NOW and RUN.card_hs.sam.id == SAM_ID
    assert RUN.sam.peer.id == CARD_ID and RUN.sam.peer.role is ps.Role.CARD
    assert RUN.card.peer.id == SAM_ID and RUN.card.peer.role is ps.Role.SAM
    assert (RUN.sam.k_enc, RUN.sam.k_mac) == (RUN.card.k_enc, RUN.card.k_mac)
    assert RUN.sam.k_enc != RUN.sam.k_mac
    assert RUN.sam.confirmed and RUN.card.confirmed and RUN.sam.open


def test_two_sessions_have_different_keys() -> None:
    other = handshake()
    assert other.sam.k_enc != RUN.sam.k_enc and other.sam.k_mac != RUN.sam.k_mac


def test_signatures_and_keys_cross_checked_independently() -> None:
    transcript = RUN.hello + RUN.answer[:-64]
    raw_verify(CARD_KEY.public_key(), b"forecourt purse v1 card" + transcript, RUN.answer[-64:])
    raw_verify(SAM_KEY.public_key(), b"forecourt purse v1 sam" + transcript, RUN.proof)
    card_eph = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), RUN.answer[112:145])
    z = RUN.sam_hs.ephemeral.exchange(ec.ECDH(), card_eph)
    salt = RUN.hello[145:161] + RUN.answer[145:161]
    k = mac(salt, z)                                                     # AES-256-CMAC extraction
    fixed = b"forecourt purse v1 session\x00" + hashlib.sha256(transcript).digest() + b"\x00\x00\x01\x00"
    keys = kdf_counter_cmac(k, fixed, 32)
    assert (keys[:16], keys[16:]) == (RUN.card.k_enc, RUN.card.k_mac)
    assert ps.derive_session_keys(z, salt[:16], salt[16:], transcript) == (keys[:16], keys[16:])
    digest = hashlib.sha256(transcript).digest()
    assert RUN.confirm == mac(keys[16:], b"forecourt purse v1 confirm" + digest)


# Which reasons a changed byte in each region of a message may give (the signature, when nothing earlier).
HELLO_REGIONS = [(0, 1, {"format"}), (1, 112, {"bad_signature"}), (112, 145, {"bad_key", "bad_signature"}),
                 (145, 161, {"bad_signature"}), (161, 165, {"expired", "bad_signature"})]
ANSWER_REGIONS = [(0, 1, {"format"}), (1, 112, {"bad_signature"}), (112, 145, {"bad_key", "bad_signature"}),
                  (145, 225, {"bad_signature"})]


def allowed(regions: list[tuple[int, int, set[str]]], index: int) -> set[str]:
    return next(reasons for start, end, reasons in regions if start <= index < end)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, ps.HELLO_LEN - 1), st.integers(1, 255))
def test_any_changed_hello_byte_fails(index: int, xor: int) -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    with pytest.raises(ps.SessionError) as caught:        # the card refuses it, or the SAM its answer
        _, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), flip(hello, index, xor))
        ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    assert caught.value.reason in allowed(HELLO_REGIONS, index)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, ps.ANSWER_LEN - 1), st.integers(1, 255))
def test_any_changed_answer_byte_fails(index: int, xor: int) -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    _, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    with pytest.raises(ps.SessionError) as caught:
        ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), flip(answer, index, xor))
    assert caught.value.reason in allowed(ANSWER_REGIONS, index)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, ps.PROOF_LEN - 1), st.integers(1, 255))
def test_any_changed_proof_byte_fails(index: int, xor: int) -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    _, proof = ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    with pytest.raises(ps.SessionError) as caught:
        ps.card_finish(card_hs, flip(proof, index, xor))
    assert caught.value.reason == "bad_signature"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, ps.CONFIRM_LEN - 1), st.integers(1, 255))
def test_any_changed_confirm_byte_fails(index: int, xor: int) -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    sam, proof = ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    _, confirm = ps.card_finish(card_hs, proof)
    with pytest.raises(ps.SessionError) as caught:
        ps.sam_confirm(sam, flip(confirm, index, xor))
    assert caught.value.reason == "bad_confirm"
    assert not sam.confirmed and not sam.open


@pytest.mark.parametrize(("message", "cut"), [("hello", 1), ("answer", 1), ("proof", 1), ("confirm", 1)])
def test_short_messages_are_refused(message: str, cut: int) -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    with pytest.raises(ps.SessionError) as caught:
        if message == "hello":
            ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello[:-cut])
        card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
        if message == "answer":
            ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer[:-cut])
        sam, proof = ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
        if message == "proof":
            ps.card_finish(card_hs, proof[:-cut])
        _, confirm = ps.card_finish(card_hs, proof)
        ps.sam_confirm(sam, confirm[:-cut])
    assert caught.value.reason == ("bad_confirm" if message == "confirm" else "length")


def test_wrong_role_expired_and_foreign_certificates_fail_the_handshake() -> None:
    with pytest.raises(ps.CertificateError, match="role"):             # a card posing as a SAM
        handshake(sam_cert=cert(ps.Role.CARD, SAM_ID, SAM_KEY))
    with pytest.raises(ps.CertificateError, match="role"):             # a SAM posing as a card
        handshake(card_cert=cert(ps.Role.SAM, CARD_ID, CARD_KEY))
    with pytest.raises(ps.CertificateError, match="expired"):          # the card checks at the hello's time
        handshake(time=EXPIRY + 1)
    with pytest.raises(ps.CertificateError, match="expired"):          # the SAM checks the card's at its own
        handshake(card_cert=cert(ps.Role.CARD, CARD_ID, CARD_KEY, expiry=NOW - 1))
    with pytest.raises(ps.CertificateError, match="bad_signature"):
        handshake(card_cert=cert(ps.Role.CARD, CARD_ID, CARD_KEY, ca=OTHER_CA))


def test_a_certificate_needs_its_private_key() -> None:
    stolen = ec.generate_private_key(ec.SECP256R1())        # the card's certificate, another key signs
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    _, answer = ps.card_answer(stolen, CARD_CERT, CA.public_key(), hello)
    with pytest.raises(ps.SessionError, match="bad_signature"):
        ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    _, proof = ps.sam_proof(sam_hs, stolen, CA.public_key(), answer)
    with pytest.raises(ps.SessionError, match="bad_signature"):
        ps.card_finish(card_hs, proof)


def test_messages_of_another_session_do_not_fit() -> None:
    sam_hs, hello = ps.sam_hello(SAM_CERT, NOW)
    with pytest.raises(ps.SessionError, match="bad_signature"):       # an old card answer replayed
        ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), RUN.answer)
    card_hs, answer = ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), hello)
    with pytest.raises(ps.SessionError, match="bad_signature"):       # an old SAM proof replayed
        ps.card_finish(card_hs, RUN.proof)
    sam, _ = ps.sam_proof(sam_hs, SAM_KEY, CA.public_key(), answer)
    with pytest.raises(ps.SessionError, match="bad_confirm"):
        ps.sam_confirm(sam, RUN.confirm)


def test_hello_time_must_be_32_bits() -> None:
    with pytest.raises(ps.SessionError):
        ps.sam_hello(SAM_CERT, -1)
    with pytest.raises(ps.SessionError):
        ps.sam_hello(SAM_CERT, 2**32)


def test_no_key_in_any_repr() -> None:
    run = handshake()
    text = repr(run.sam) + repr(run.card) + repr(run.sam_hs) + repr(run.card_hs)
    for key in (run.sam.k_enc, run.sam.k_mac):
        assert key.hex() not in text and repr(key)[2:-1] not in text
    assert "k_enc" not in text and "ephemeral" not in text


# -- secure messaging -----------------------------------------------------------------------------------

def test_sm_command_and_answer_round_trip() -> None:
    run = handshake()
    apdu = ps.wrap_command(run.sam, 0x80, 0x54, 0x01, 0x02, b"reserve")
    assert apdu[:5] == bytes([0x84, 0x54, 0x01, 0x02, 7 + 8]) and apdu[5:12] == b"reserve"
    assert apdu[12:] == mac(run.sam.k_mac, b"\x00\x00\x00\x00" + apdu[:4] + b"reserve")[:8]
    assert ps.unwrap_command(run.card, apdu) == (0x54, 0x01, 0x02, b"reserve")
    rapdu = ps.wrap_response(run.card, b"record", b"\x90\x00")
    assert rapdu[6:14] == mac(run.card.k_mac, b"\x00\x00\x00\x01\x90\x00record")[:8]
    assert ps.unwrap_response(run.sam, rapdu) == (b"record", b"\x90\x00")
    for i in range(3):                                             # the counters stay in step
        apdu = ps.wrap_command(run.sam, 0x84, 0x56, 0, 0, bytes([i]) * i)
        assert ps.unwrap_command(run.card, apdu)[3] == bytes([i]) * i
        assert ps.unwrap_response(run.sam, ps.wrap_response(run.card, b"", b"\x63\xc2")) == (b"", b"\x63\xc2")
    assert run.sam.counter == run.card.counter == 8


def test_sm_replay_and_reorder_fail() -> None:
    run = handshake()
    first = ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"one")
    second = ps.wrap_command(run.sam, 0x80, 0x56, 0, 0, b"two")
    with pytest.raises(ps.SecureMessagingError) as caught:        # second before first
        ps.unwrap_command(run.card, second)
    assert caught.value.reason == "bad_mac" and not run.card.open
    with pytest.raises(ps.SecureMessagingError, match="closed"):   # the card's session is over
        ps.unwrap_command(run.card, first)
    run = handshake()
    apdu = ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"one")
    ps.unwrap_command(run.card, apdu)
    answer = ps.wrap_response(run.card, b"ok", b"\x90\x00")
    ps.unwrap_response(run.sam, answer)
    with pytest.raises(ps.SecureMessagingError, match="bad_mac"):  # the same command again
        ps.unwrap_command(run.card, apdu)
    with pytest.raises(ps.SecureMessagingError, match="bad_mac"):  # an old answer
        ps.unwrap_response(run.sam, answer)


def test_sm_of_another_session_fails() -> None:
    one, two = handshake(), handshake()
    with pytest.raises(ps.SecureMessagingError, match="bad_mac"):
        ps.unwrap_command(two.card, ps.wrap_command(one.sam, 0x80, 0x54, 0, 0, b"x"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.data())
def test_any_changed_sm_byte_fails(data: bytes, draw: st.DataObject) -> None:
    run = handshake()
    apdu = ps.wrap_command(run.sam, 0x80, 0x58, 0x00, 0x01, data)
    index = draw.draw(st.integers(0, len(apdu) - 1))
    with pytest.raises(ps.SecureMessagingError):
        ps.unwrap_command(run.card, flip(apdu, index, draw.draw(st.integers(1, 255))))
    run = handshake()
    ps.unwrap_command(run.card, ps.wrap_command(run.sam, 0x80, 0x58, 0, 1, b""))
    rapdu = ps.wrap_response(run.card, data, b"\x90\x00")
    index = draw.draw(st.integers(0, len(rapdu) - 1))
    changed = flip(rapdu, index, draw.draw(st.integers(1, 255)))
    if len(changed) == 2 and ps.is_bare_error(changed):
        assert ps.unwrap_response(run.sam, changed)[0] == b"" and not run.sam.open
        return
    with pytest.raises(ps.SecureMessagingError):
        ps.unwrap_response(run.sam, changed)


def test_bare_error_status_closes_the_session_and_bare_success_is_refused() -> None:
    run = handshake()
    ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"")
    assert ps.unwrap_response(run.sam, b"\x69\x88") == (b"", b"\x69\x88")
    assert not run.sam.open
    with pytest.raises(ps.SecureMessagingError, match="closed"):
        ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"")
    for bare in (b"\x90\x00", b"\x63\xc1", b"\x62\x83"):
        run = handshake()
        ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"")
        with pytest.raises(ps.SecureMessagingError, match="length"):
            ps.unwrap_response(run.sam, bare)


def test_sm_form_refusals() -> None:
    run = handshake()
    with pytest.raises(ps.SecureMessagingError, match="format"):
        ps.wrap_command(run.sam, 0x00, 0x20, 0, 0, b"")
    with pytest.raises(ps.SecureMessagingError, match="length"):
        ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, bytes(248))
    assert len(ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, bytes(247))) == 260
    with pytest.raises(ps.SecureMessagingError, match="length"):
        ps.wrap_response(run.card, bytes(249), b"\x90\x00")
    apdu = ps.wrap_command(run.sam, 0x80, 0x54, 0, 0, b"abc")
    with pytest.raises(ps.SecureMessagingError, match="format"):
        ps.unwrap_command(run.card, b"\x80" + apdu[1:])
    with pytest.raises(ps.SecureMessagingError, match="closed"):
        ps.unwrap_command(run.card, apdu)


# -- enciphered PIN -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.text("0123456789", min_size=4, max_size=12))
def test_pin_round_trip(pin: str) -> None:
    block = ps.encipher_pin(RUN.sam, pin)
    assert len(block) == 16 and ps.decipher_pin(RUN.card, block) == pin
    clear = Cipher(algorithms.AES(RUN.card.k_enc), modes.ECB()).decryptor().update(block)
    assert clear[:8].hex().upper() == "4" + format(len(pin), "X") + pin + "A" * (14 - len(pin))


def test_pin_blocks_differ_and_need_the_session_key() -> None:
    first, second = ps.encipher_pin(RUN.sam, "1234"), ps.encipher_pin(RUN.sam, "1234")
    assert first != second
    with pytest.raises(ps.SessionError, match="format"):
        ps.decipher_pin(handshake().card, first)
    with pytest.raises(ps.SessionError, match="length"):
        ps.decipher_pin(RUN.card, first[:15])
    closed = handshake()
    closed.card.open = closed.sam.open = False
    with pytest.raises(ps.SecureMessagingError, match="closed"):
        ps.encipher_pin(closed.sam, "1234")
    with pytest.raises(ps.SecureMessagingError, match="closed"):
        ps.decipher_pin(closed.card, first)


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "١٢٣٤", ""])
def test_bad_pins_are_refused_without_echo(pin: str) -> None:
    with pytest.raises(ps.SessionError) as caught:
        ps.encipher_pin(RUN.sam, pin)
    assert caught.value.reason == "format" and (not pin or pin not in str(caught.value))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_raise_only_session_errors(raw: bytes) -> None:
    run = handshake()
    for step in (lambda: ps.open_certificate(CA.public_key(), raw, role=ps.Role.SAM, now=NOW),
                 lambda: ps.card_answer(CARD_KEY, CARD_CERT, CA.public_key(), raw),
                 lambda: ps.sam_proof(run.sam_hs, SAM_KEY, CA.public_key(), raw),
                 lambda: ps.card_finish(run.card_hs, raw),
                 lambda: ps.decipher_pin(run.card, raw),
                 lambda: ps.unwrap_command(run.card, raw),
                 lambda: ps.unwrap_response(run.sam, raw)):
        try:
            step()
        except ps.SessionError:
            pass
