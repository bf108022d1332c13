"""A simulated purse SAM: the terminal's secure access module, in the second vpcd slot.

It makes its P-256 key pair inside and never lets the private half out; provisioning gives it its
certificate and the issuer CA's key, then its SAM MAC key sealed to its own key. It then runs the mutual
authentication with a card (contracts.purse_session), wraps and unwraps the card's secure-messaging APDUs
for the terminal, enciphers the PIN for VERIFY and MACs each signed record it forwards with a sequence
number of its own. Power-off and reset drop the session; keys, certificate and sequence stay (its EEPROM).
Commands and status words: docs/chip-wallet-sam.md.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from contracts import purse_sam_apdu as sa
from contracts import purse_session as ps
from contracts.errors import ConfigError
from contracts.purse_keys import ID_LEN, KEY_LENGTHS
from contracts.purse_records import RECORD_LEN, RecordError, decode
from contracts.purse_seal import SealError, open_sealed, sam_key_context
from hostsim.cards.atr import build_atr
from hostsim.cards.iso7816 import (
    SW_AUTH_FAILED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_SM_DATA_INCORRECT,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    split_apdu,
)

__all__ = ["SAM_ATR", "SW_SECURITY_NOT_SATISFIED", "PurseSam"]

SAM_ATR = build_atr(b"FORESAM1")
SW_SECURITY_NOT_SATISFIED = b"\x69\x82"      # no authenticated session (ISO/IEC 7816-4)
_U32 = 2**32 - 1


class _Refused(Exception):
    """A command refused with this status word."""

    def __init__(self, sw: bytes) -> None:
        super().__init__(sw.hex())
        self.sw = sw


class PurseSam:
    """The SAM application; construct it blank with its id (set at manufacture)."""

    def __init__(self, sam_id: bytes, atr: bytes = SAM_ATR) -> None:
        if len(sam_id) != ID_LEN:
            raise ConfigError("a SAM id is 8 bytes", length=len(sam_id))
        self.sam_id = bytes(sam_id)
        self.atr = bytes(atr)
        self.state = sa.SamState.BLANK
        self.key_version = 0
        self.sequence = 0                 # the last sequence number given to a record
        self.selected = False
        self._private: ec.EllipticCurvePrivateKey | None = None
        self._certificate = b""
        self._expiry = 0
        self._ca: ec.EllipticCurvePublicKey | None = None
        self._ca_raw = b""
        self._sam_key = b""
        self._handshake: ps.SamHandshake | None = None
        self._session: ps.Session | None = None
        self._handlers: dict[int, Callable[[int, int, bytes], bytes]] = {
            sa.INS_GENERATE_KEY_PAIR: self._generate, sa.INS_PUT_CERTIFICATE: self._put_certificate,
            sa.INS_PUT_SAM_KEY: self._put_sam_key, sa.INS_AUTH_HELLO: self._hello,
            sa.INS_AUTH_PROOF: self._proof, sa.INS_AUTH_CONFIRM: self._confirm, sa.INS_WRAP: self._wrap,
            sa.INS_UNWRAP: self._unwrap, sa.INS_ENCIPHER_PIN: self._encipher_pin,
            sa.INS_MAC_RECORD: self._mac_record, sa.INS_GET_SEQUENCE: self._get_sequence,
        }

    def __repr__(self) -> str:        # never a key
        return (f"PurseSam(id={self.sam_id.hex()}, state={self.state.name}, key_version={self.key_version}, "
                f"sequence={self.sequence})")

    def info(self) -> sa.SamInfo:
        return sa.SamInfo(self.sam_id, self.state, self.key_version)

    @property
    def session_open(self) -> bool:
        """Whether WRAP and UNWRAP work now: a confirmed session, not closed."""
        return self._session is not None and self._session.confirmed and self._session.open

    def power_on(self) -> None:
        self._drop()

    def power_off(self) -> None:
        self._drop()

    def reset(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self.selected = False
        self._handshake = None
        self._session = None

    def apdu(self, command: bytes) -> bytes:
        parts = split_apdu(command)
        if parts is None:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2, data = parts
        if cla == 0x00 and ins == sa.INS_SELECT:
            return self._select(p1, p2, data)
        if cla != sa.CLA_SAM:
            return SW_CLA_NOT_SUPPORTED
        handler = self._handlers.get(ins)
        if handler is None:
            return SW_INS_NOT_SUPPORTED
        if not self.selected:
            return SW_CONDITIONS_NOT_SATISFIED
        try:
            return handler(p1, p2, data) + SW_OK
        except _Refused as refused:
            return refused.sw
        except sa.SamApduError as exc:
            return SW_WRONG_LENGTH if exc.reason == "length" else SW_WRONG_DATA

    def _select(self, p1: int, p2: int, name: bytes) -> bytes:
        if p1 != 0x04 or p2 not in (0x00, 0x0C):
            return SW_WRONG_P1P2
        if name != sa.SAM_AID:
            self._drop()
            return SW_FILE_NOT_FOUND
        self._drop()
        self.selected = True
        return (b"" if p2 == 0x0C else sa.encode_fci(self.info())) + SW_OK

    # -- personalisation -----------------------------------------------------------------------------------

    def _need(self, *states: sa.SamState) -> None:
        if self.state not in states:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)

    def _generate(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        self._need(sa.SamState.BLANK)             # a SAM makes its key pair once
        self._private = ec.generate_private_key(ec.SECP256R1())
        self.state = sa.SamState.KEYED
        return ps.public_bytes(self._private)

    def _put_certificate(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        self._need(sa.SamState.KEYED, sa.SamState.CERTIFIED, sa.SamState.PERSONALIZED)
        raw, ca_raw = sa.parse_put_certificate(data)
        if self._ca_raw and ca_raw != self._ca_raw:       # the first CA key is the trust anchor for good
            raise _Refused(SW_WRONG_DATA)
        try:
            ca = ps.load_public_key(ca_raw)
            cert = ps.open_certificate(ca, raw, role=ps.Role.SAM, now=0)    # no clock: cards check expiry
        except ps.SessionError:
            raise _Refused(SW_WRONG_DATA) from None
        own = ps.public_bytes(self._private) if self._private is not None else b""
        if cert.id != self.sam_id or cert.public_key != own:
            raise _Refused(SW_WRONG_DATA)
        self._ca, self._ca_raw, self._certificate, self._expiry = ca, ca_raw, raw, cert.expiry
        if self.state is sa.SamState.KEYED:
            self.state = sa.SamState.CERTIFIED
        return b""

    def _put_sam_key(self, p1: int, p2: int, data: bytes) -> bytes:
        self._need(sa.SamState.CERTIFIED, sa.SamState.PERSONALIZED)
        if p1 == 0 or p2 != 0:
            raise _Refused(SW_WRONG_P1P2)
        if p1 < self.key_version:                 # no going back to an older key
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        if self._private is None:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        try:
            key = open_sealed(self._private, data, context=sam_key_context(self.sam_id, p1))
        except SealError:
            raise _Refused(SW_WRONG_DATA) from None
        if len(key) not in KEY_LENGTHS:
            raise _Refused(SW_WRONG_DATA)
        self._sam_key, self.key_version, self.state = key, p1, sa.SamState.PERSONALIZED
        return b""

    # -- mutual authentication -----------------------------------------------------------------------------

    def _keys(self) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
        self._need(sa.SamState.PERSONALIZED)
        if self._private is None or self._ca is None:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        return self._private, self._ca

    def _hello(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        self._keys()
        time = sa.parse_time(data)
        if time > self._expiry:                   # its own certificate is out of date: no card would take it
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        self._session = None
        self._handshake, hello = ps.sam_hello(self._certificate, time)
        return hello

    def _proof(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        private, ca = self._keys()
        handshake, self._handshake = self._handshake, None     # one answer per hello
        if handshake is None:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        if len(data) != ps.ANSWER_LEN:
            raise _Refused(SW_WRONG_LENGTH)
        try:
            self._session, proof = ps.sam_proof(handshake, private, ca, data)
        except ps.SessionError:
            raise _Refused(SW_AUTH_FAILED) from None
        return proof + self._session.peer.id

    def _confirm(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        session = self._session
        if session is None or session.confirmed:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        try:
            ps.sam_confirm(session, data)
        except ps.SessionError:
            self._session = None
            raise _Refused(SW_AUTH_FAILED) from None
        return b""

    # -- the session's commands ----------------------------------------------------------------------------

    def _open(self) -> ps.Session:
        if self._session is None or not self.session_open:
            raise _Refused(SW_SECURITY_NOT_SATISFIED)
        return self._session

    def _wrap(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        session = self._open()
        cla, ins, c1, c2, body = sa.parse_wrap(data)
        try:
            return ps.wrap_command(session, cla, ins, c1, c2, body)
        except ps.SecureMessagingError:
            raise _Refused(SW_WRONG_DATA) from None

    def _unwrap(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        session = self._open()
        try:
            body, sw = ps.unwrap_response(session, data)
        except ps.SecureMessagingError:
            raise _Refused(SW_SM_DATA_INCORRECT) from None     # the session is closed
        return sa.unwrapped_answer(body, sw)

    def _encipher_pin(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        session = self._open()
        if not 4 <= len(data) <= 12 or not all(0x30 <= b <= 0x39 for b in data):
            raise _Refused(SW_WRONG_DATA)
        block = ps.encipher_pin(session, data.decode("ascii"))
        return ps.wrap_command(session, ps.SM_CLA, sa.VERIFY_INS, 0x00, sa.VERIFY_P2, block)

    # -- records -------------------------------------------------------------------------------------------

    def _mac_record(self, p1: int, p2: int, data: bytes) -> bytes:
        """Only records of the card this SAM authenticated in its present session (open or closed since)."""
        _no_params(p1, p2)
        self._keys()
        session = self._session
        if session is None or not session.confirmed:
            raise _Refused(SW_SECURITY_NOT_SATISFIED)
        if len(data) != RECORD_LEN + 16:
            raise _Refused(SW_WRONG_LENGTH)
        try:
            record = decode(data[:RECORD_LEN])
        except RecordError:
            raise _Refused(SW_WRONG_DATA) from None
        if record.card_id != session.peer.id:
            raise _Refused(SW_WRONG_DATA)
        if self.sequence >= _U32:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        self.sequence += 1
        return self.sequence.to_bytes(4, "big") + sa.sam_record_mac(self._sam_key, data, self.sequence)

    def _get_sequence(self, p1: int, p2: int, data: bytes) -> bytes:
        _no_params(p1, p2)
        return self.sequence.to_bytes(4, "big")


def _no_params(p1: int, p2: int) -> None:
    if p1 or p2:
        raise _Refused(SW_WRONG_P1P2)
