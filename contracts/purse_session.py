"""The chip purse: card and SAM authenticate each other, then talk under session keys.

Pure functions over bytes, no I/O; the only randomness is fresh ephemeral keys, nonces and PIN-block fill.

- Certificate: format 01 | role | id (8) | key version | expiry (4, Unix s) | P-256 key (33, compressed),
  then the issuer CA's ECDSA-P256-SHA256 signature as raw r || s (64): 112 bytes.
- Handshake (each message a short APDU's data): SAM hello = SAM cert | ephemeral key | nonce (16) | time (4);
  card answer = card cert | ephemeral key | nonce | card signature; SAM proof = SAM signature; card confirm
  = AES-CMAC under K_mac. Signatures cover SHA-256 of a label and the transcript (hello and the card's
  first three fields). Keys: NIST SP 800-56C Rev. 2 two-step (section 5): AES-256-CMAC extraction of the
  ECDH secret with the two nonces as salt, then the SP 800-108 counter KDF of contracts.purse_keys.
- Secure messaging (CLA 84): an 8-byte AES-CMAC over a 32-bit sequence counter, the header or status word
  and the data; the counter advances on every command and every answer, so nothing replays or reorders.
- Enciphered PIN: the ISO 9564-1 format 4 plaintext PIN field, one AES block under K_enc.
The bytes, the choices and the SAM's commands: docs/chip-wallet-sam.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from contracts.errors import MessageError
from contracts.purse_keys import ID_LEN, MAX_VERSION, kdf_counter_cmac, mac, verify_mac

__all__ = [
    "ANSWER_LEN", "CERT_LEN", "CONFIRM_LEN", "HELLO_LEN", "KEY_LEN", "NONCE_LEN", "PIN_BLOCK_LEN",
    "PROOF_LEN", "SIG_LEN", "SM_MAC_LEN", "CardHandshake", "Certificate", "CertificateError", "Role",
    "SamHandshake", "SecureMessagingError", "Session", "SessionError", "card_answer", "card_finish",
    "decipher_pin", "derive_session_keys", "encipher_pin", "is_bare_error", "issue_certificate",
    "load_public_key", "open_certificate", "public_bytes", "sam_confirm", "sam_hello", "sam_proof",
    "sign_raw", "unwrap_command", "unwrap_response", "verify_raw", "wrap_command", "wrap_response",
]

CERT_FORMAT = 0x01
KEY_LEN = 33                      # SEC 1 compressed P-256 point
SIG_LEN = 64                      # raw r || s
NONCE_LEN = 16
_BODY = struct.Struct(">BB8sBI33s")
CERT_LEN = _BODY.size + SIG_LEN                        # 112
HELLO_LEN = CERT_LEN + KEY_LEN + NONCE_LEN + 4         # 165
ANSWER_LEN = CERT_LEN + KEY_LEN + NONCE_LEN + SIG_LEN  # 225
PROOF_LEN = SIG_LEN
CONFIRM_LEN = 16
SM_MAC_LEN = 8
SM_CLA = 0x84
PIN_BLOCK_LEN = 16
LABEL_CARD = b"forecourt purse v1 card"
LABEL_SAM = b"forecourt purse v1 sam"
LABEL_CONFIRM = b"forecourt purse v1 confirm"
LABEL_SESSION = b"forecourt purse v1 session"
_U32 = 2**32 - 1
_CURVE = ec.SECP256R1()


class SessionError(MessageError):
    """A certificate, handshake message, secure-messaging APDU or PIN block is refused; reason says why."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class CertificateError(SessionError):
    """A certificate is malformed, of the wrong role, expired or not signed by the issuer CA."""


class SecureMessagingError(SessionError):
    """An SM command or answer does not check (MAC, counter, form); the session is closed."""


class Role(IntEnum):
    """Whose key a certificate holds."""

    CARD = 1
    SAM = 2


def public_bytes(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The 33-byte compressed SEC 1 form of a P-256 public key (of a private key: its public half)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def load_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its compressed form; reason bad_key if it is not a point on the curve."""
    if len(raw) != KEY_LEN or raw[0] not in (2, 3):
        raise SessionError("a public key is a 33-byte compressed P-256 point", reason="bad_key")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, raw)
    except ValueError:
        raise SessionError("not a point on P-256", reason="bad_key") from None


def sign_raw(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA P-256 over SHA-256(message), as raw r || s (64 bytes)."""
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_raw(public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> bool:
    """Whether signature (raw r || s) is an ECDSA P-256 SHA-256 signature of message under public_key."""
    if len(signature) != SIG_LEN:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Certificate:
    """An issuer-certified P-256 public key of one card or SAM; public_key is the compressed point."""

    role: Role
    id: bytes
    key_version: int
    expiry: int                   # Unix seconds; valid while the time is at most this
    public_key: bytes

    def key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key)


def issue_certificate(ca_private_key: ec.EllipticCurvePrivateKey, cert: Certificate) -> bytes:
    """The certificate's 112 bytes, signed by the issuer CA (the issuer, or the test's CA)."""
    if (cert.role not in (Role.CARD, Role.SAM) or len(cert.id) != ID_LEN
            or not 0 < cert.key_version <= MAX_VERSION or not 0 <= cert.expiry <= _U32):
        raise CertificateError("role 1 or 2, id 8 bytes, key version 1..255, expiry 32 bits", reason="format")
    load_public_key(cert.public_key)
    body = _BODY.pack(CERT_FORMAT, cert.role, cert.id, cert.key_version, cert.expiry, cert.public_key)
    return body + sign_raw(ca_private_key, body)


def open_certificate(ca_public_key: ec.EllipticCurvePublicKey, raw: bytes, *, role: Role,
                     now: int) -> Certificate:
    """The certificate in raw, checked: form, the CA's signature (before any field but the format byte is
    read), then role and expiry against now."""
    if len(raw) != CERT_LEN:
        raise CertificateError(f"a certificate is {CERT_LEN} bytes", reason="length", length=len(raw))
    if raw[0] != CERT_FORMAT:
        raise CertificateError("unknown certificate format", reason="format", format=raw[0])
    body = raw[:_BODY.size]
    if not verify_raw(ca_public_key, body, raw[_BODY.size:]):
        raise CertificateError("certificate not signed by the issuer CA", reason="bad_signature")
    _, role_byte, ident, version, expiry, point = _BODY.unpack(body)
    if role_byte != role:
        raise CertificateError("certificate of another role", reason="role", role=role_byte)
    if version == 0 or point[0] not in (2, 3):
        raise CertificateError("certificate fields out of range", reason="format")
    if now > expiry:
        raise CertificateError("certificate expired", reason="expired", expiry=expiry, now=now)
    return Certificate(Role(role_byte), ident, version, expiry, point)


@dataclass
class Session:
    """One authenticated session, either side: the peer's certificate, the keys, the SM counter. open turns
    False at any SM failure or bare error status (a new handshake is needed); confirmed is True once the
    SAM checked the card's key confirmation (the card's side is confirmed by the SAM's signature)."""

    peer: Certificate
    k_enc: bytes = field(repr=False)
    k_mac: bytes = field(repr=False)
    transcript_hash: bytes = field(repr=False)
    counter: int = 0
    confirmed: bool = False
    open: bool = True


@dataclass
class SamHandshake:
    """The SAM's state between its hello and the card's answer."""

    time: int
    hello: bytes
    nonce: bytes
    ephemeral: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass
class CardHandshake:
    """The card's state between its answer and the SAM's proof: time is the SAM's (the transaction's)."""

    time: int
    sam: Certificate
    transcript: bytes = field(repr=False)
    k_enc: bytes = field(repr=False)
    k_mac: bytes = field(repr=False)


def derive_session_keys(z: bytes, sam_nonce: bytes, card_nonce: bytes,
                        transcript: bytes) -> tuple[bytes, bytes]:
    """(K_enc, K_mac) from the ECDH secret Z: SP 800-56C Rev. 2 two-step, AES-256-CMAC extract, KDF expand."""
    k = mac(sam_nonce + card_nonce, z)
    fixed = LABEL_SESSION + b"\x00" + hashlib.sha256(transcript).digest() + struct.pack(">I", 256)
    keys = kdf_counter_cmac(k, fixed, 32)
    return keys[:16], keys[16:]


def sam_hello(sam_cert_raw: bytes, time: int) -> tuple[SamHandshake, bytes]:
    """Message 1: the SAM's certificate, a fresh ephemeral key and nonce, and the time (the terminal's)."""
    if len(sam_cert_raw) != CERT_LEN or not 0 <= time <= _U32:
        raise SessionError("a certificate is 112 bytes, a time 32 bits", reason="format", time=time)
    ephemeral = ec.generate_private_key(_CURVE)
    nonce = os.urandom(NONCE_LEN)
    hello = sam_cert_raw + public_bytes(ephemeral) + nonce + struct.pack(">I", time)
    return SamHandshake(time, hello, nonce, ephemeral), hello


def card_answer(card_private_key: ec.EllipticCurvePrivateKey, card_cert_raw: bytes,
                ca_public_key: ec.EllipticCurvePublicKey, hello: bytes) -> tuple[CardHandshake, bytes]:
    """Message 2, on the card: check the SAM's certificate (role SAM, expiry at the hello's time), answer
    with the card's certificate, a fresh ephemeral key and nonce, and its signature of the transcript."""
    if len(hello) != HELLO_LEN or len(card_cert_raw) != CERT_LEN:
        raise SessionError(f"a SAM hello is {HELLO_LEN} bytes", reason="length", length=len(hello))
    time = struct.unpack(">I", hello[-4:])[0]
    sam = open_certificate(ca_public_key, hello[:CERT_LEN], role=Role.SAM, now=time)
    sam_eph = hello[CERT_LEN:CERT_LEN + KEY_LEN]
    sam_nonce = hello[CERT_LEN + KEY_LEN:CERT_LEN + KEY_LEN + NONCE_LEN]
    sam_point = load_public_key(sam_eph)
    ephemeral = ec.generate_private_key(_CURVE)
    nonce = os.urandom(NONCE_LEN)
    transcript = hello + card_cert_raw + public_bytes(ephemeral) + nonce
    z = ephemeral.exchange(ec.ECDH(), sam_point)
    k_enc, k_mac = derive_session_keys(z, sam_nonce, nonce, transcript)
    answer = transcript[HELLO_LEN:] + sign_raw(card_private_key, LABEL_CARD + transcript)
    return CardHandshake(time, sam, transcript, k_enc, k_mac), answer


def sam_proof(hs: SamHandshake, sam_private_key: ec.EllipticCurvePrivateKey,
              ca_public_key: ec.EllipticCurvePublicKey, answer: bytes) -> tuple[Session, bytes]:
    """Message 3, on the SAM: check the card's certificate and signature, sign the transcript in turn.

    The session is not confirmed until sam_confirm checks the card's message 4.
    """
    if len(answer) != ANSWER_LEN:
        raise SessionError(f"a card answer is {ANSWER_LEN} bytes", reason="length", length=len(answer))
    card = open_certificate(ca_public_key, answer[:CERT_LEN], role=Role.CARD, now=hs.time)
    card_eph = answer[CERT_LEN:CERT_LEN + KEY_LEN]
    card_nonce = answer[CERT_LEN + KEY_LEN:CERT_LEN + KEY_LEN + NONCE_LEN]
    transcript = hs.hello + answer[:-SIG_LEN]
    if not verify_raw(card.key(), LABEL_CARD + transcript, answer[-SIG_LEN:]):
        raise SessionError("the card's signature does not check", reason="bad_signature")
    z = hs.ephemeral.exchange(ec.ECDH(), load_public_key(card_eph))
    k_enc, k_mac = derive_session_keys(z, hs.nonce, card_nonce, transcript)
    proof = sign_raw(sam_private_key, LABEL_SAM + transcript)
    return Session(card, k_enc, k_mac, hashlib.sha256(transcript).digest()), proof


def card_finish(hs: CardHandshake, proof: bytes) -> tuple[Session, bytes]:
    """Message 4, on the card: check the SAM's signature of the transcript, answer the key confirmation."""
    if len(proof) != PROOF_LEN:
        raise SessionError(f"a SAM proof is {PROOF_LEN} bytes", reason="length", length=len(proof))
    if not verify_raw(hs.sam.key(), LABEL_SAM + hs.transcript, proof):
        raise SessionError("the SAM's signature does not check", reason="bad_signature")
    digest = hashlib.sha256(hs.transcript).digest()
    session = Session(hs.sam, hs.k_enc, hs.k_mac, digest, confirmed=True)
    return session, mac(hs.k_mac, LABEL_CONFIRM + digest)


def sam_confirm(session: Session, confirm: bytes) -> None:
    """Check message 4 on the SAM (key confirmation) and mark the session confirmed; a wrong one closes it."""
    if len(confirm) != CONFIRM_LEN or not verify_mac(session.k_mac, LABEL_CONFIRM + session.transcript_hash,
                                                     confirm):
        session.open = False
        raise SessionError("the card's key confirmation does not check", reason="bad_confirm")
    session.confirmed = True


def _sm_fail(session: Session, message: str, reason: str) -> SecureMessagingError:
    session.open = False
    return SecureMessagingError(message, reason=reason)


def _check_open(session: Session) -> None:
    if not session.open:
        raise SecureMessagingError("the session is closed", reason="closed")


def _next(session: Session) -> bytes:
    """The counter for this APDU as 4 bytes, then advanced; a closed or exhausted session refuses."""
    _check_open(session)
    if session.counter > _U32:
        raise _sm_fail(session, "the session's counter is exhausted", "closed")
    ssc = struct.pack(">I", session.counter)
    session.counter += 1
    return ssc


def _sm_mac(session: Session, ssc: bytes, head: bytes, data: bytes) -> bytes:
    return mac(session.k_mac, ssc + head + data)[:SM_MAC_LEN]


def wrap_command(session: Session, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
    """A complete short APDU under SM: 84 INS P1 P2 Lc, data || MAC8 over counter || header || data."""
    if cla not in (0x80, SM_CLA) or not all(0 <= b <= 0xFF for b in (ins, p1, p2)):
        raise SecureMessagingError("SM commands are in the proprietary class 80/84", reason="format")
    if len(data) > 255 - SM_MAC_LEN:
        raise SecureMessagingError("SM command data is at most 247 bytes", reason="length")
    head = bytes([SM_CLA, ins, p1, p2])
    body = data + _sm_mac(session, _next(session), head, data)
    return head + bytes([len(body)]) + body


def unwrap_command(session: Session, apdu: bytes) -> tuple[int, int, int, bytes]:
    """(INS, P1, P2, data) of an SM command whose MAC checks at this counter; otherwise the session closes."""
    ssc = _next(session)
    if len(apdu) < 5 + SM_MAC_LEN or apdu[4] != len(apdu) - 5:
        raise _sm_fail(session, "malformed SM command", "length")
    if apdu[0] != SM_CLA:
        raise _sm_fail(session, "an SM command has CLA 84", "format")
    head, data, tag = apdu[:4], apdu[5:-SM_MAC_LEN], apdu[-SM_MAC_LEN:]
    if not hmac.compare_digest(_sm_mac(session, ssc, head, data), tag):
        raise _sm_fail(session, "SM command MAC does not check", "bad_mac")
    return apdu[1], apdu[2], apdu[3], data


def wrap_response(session: Session, data: bytes, sw: bytes) -> bytes:
    """An answer under SM: data || MAC8 over counter || SW || data, then SW (the card's side)."""
    if len(sw) != 2 or len(data) > 256 - SM_MAC_LEN:
        raise SecureMessagingError("SW is 2 bytes, SM answer data at most 248", reason="length")
    return data + _sm_mac(session, _next(session), sw, data) + sw


def is_bare_error(sw: bytes) -> bool:
    """Whether a bare status (no data, no MAC) is one an SM answer may be: an error, SW1 64..6F.

    ISO/IEC 7816-4 5.1.3: 64-65 execution errors, 66 security, 67-6F checking errors. A card answers bare
    only when it cannot or will not MAC (SM failure, no session) and drops its session keys when it does;
    9000 and the warnings 62xx/63xx (63Cx: PIN tries left) always come MACed.
    """
    return len(sw) == 2 and 0x64 <= sw[0] <= 0x6F


def unwrap_response(session: Session, rapdu: bytes) -> tuple[bytes, bytes]:
    """(data, SW) of an SM answer whose MAC checks. A bare error status is returned as (b"", SW) and
    closes the session (the card closed its side); anything else unMACed is refused."""
    if len(rapdu) == 2 and is_bare_error(rapdu):
        if not session.open:
            raise SecureMessagingError("the session is closed", reason="closed")
        session.open = False
        return b"", bytes(rapdu)
    ssc = _next(session)
    if len(rapdu) < SM_MAC_LEN + 2:
        raise _sm_fail(session, "an SM answer without its MAC", "length")
    data, tag, sw = rapdu[:-SM_MAC_LEN - 2], rapdu[-SM_MAC_LEN - 2:-2], rapdu[-2:]
    if not hmac.compare_digest(_sm_mac(session, ssc, sw, data), tag):
        raise _sm_fail(session, "SM answer MAC does not check", "bad_mac")
    return bytes(data), bytes(sw)


def _ecb(key: bytes, block: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())  # one block only: ECB is the block cipher itself
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(block) + op.finalize()


def encipher_pin(session: Session, pin: str) -> bytes:
    """The VERIFY data: ISO 9564-1 format 4 plaintext PIN field (4, length, digits, fill A; 8 random
    bytes) enciphered under K_enc; the random half makes every block different."""
    _check_open(session)
    if not 4 <= len(pin) <= 12 or not pin.isascii() or not pin.isdigit():
        raise SessionError("a PIN is 4 to 12 digits", reason="format")
    nibbles = "4" + format(len(pin), "X") + pin + "A" * (14 - len(pin))
    return _ecb(session.k_enc, bytes.fromhex(nibbles) + os.urandom(8), encrypt=True)


def decipher_pin(session: Session, block: bytes) -> str:
    """The PIN digits of an enciphered PIN block; reason format if it is not a format 4 field."""
    _check_open(session)
    if len(block) != PIN_BLOCK_LEN:
        raise SessionError("a PIN block is 16 bytes", reason="length")
    nibbles = _ecb(session.k_enc, block, encrypt=False)[:8].hex().upper()
    length = int(nibbles[1], 16)
    digits, fill = nibbles[2:2 + length], nibbles[2 + length:]
    if nibbles[0] != "4" or not 4 <= length <= 12 or not digits.isdigit() or fill != "A" * (14 - length):
        raise SessionError("not a format 4 PIN block", reason="format")
    return digits
