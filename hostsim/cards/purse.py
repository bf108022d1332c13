"""The purse application's APDU face (docs/chip-wallet-commands.md): dispatch, and the card's side of
mutual authentication and secure messaging (contracts.purse_session); the rules are in purse_state.

Plain class (CLA 00): SELECT, READ RECORD (SFI 1 wallets, SFI 2 the log), GET DATA. CLA 80: MUTUAL
AUTHENTICATE in two steps. CLA 84, only inside an authenticated session: VERIFY and the purse's own
commands; every answer to them is MACed, except the bare 6982 (no session) and 6988 (the SM MAC or counter
failed: the card drops the session too). A torn command raises CardTorn out of apdu(): no answer leaves.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from contracts import purse_apdu as apdu
from contracts import purse_session as ps
from contracts.purse_wallets import PurseDataError, Refusal, Status
from hostsim.cards.iso7816 import (
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    split_apdu,
)
from hostsim.cards.purse_state import CardTorn, PurseRefused, PurseState

__all__ = ["SW_AUTH_FAILED", "SW_SECURITY_NOT_SATISFIED", "SW_SM_DATA_INCORRECT", "PurseApplet"]

SW_AUTH_FAILED = b"\x63\x00"
SW_SECURITY_NOT_SATISFIED = b"\x69\x82"
SW_SM_DATA_INCORRECT = b"\x69\x88"
SW_SELECTED_BLOCKED = apdu.SW_BLOCKED.to_bytes(2, "big")
_SECURE_INS = {apdu.INS_VERIFY, apdu.INS_RESERVE, apdu.INS_SETTLE, apdu.INS_COMPLETE_PENDING,
               apdu.INS_INITIALIZE_LOAD, apdu.INS_LOAD, apdu.INS_APPLY_SCRIPT}


class PurseApplet:
    """The purse application of one card: its state, its P-256 key pair and certificate, the CA's key."""

    def __init__(self, state: PurseState, private_key: ec.EllipticCurvePrivateKey, certificate: bytes,
                 ca_public_key: ec.EllipticCurvePublicKey) -> None:
        self.state = state
        self._private_key = private_key
        self.certificate = bytes(certificate)
        self._ca = ca_public_key
        self.selected = False
        self._handshake: ps.CardHandshake | None = None
        self._session: ps.Session | None = None

    def __repr__(self) -> str:
        return f"PurseApplet(card_id={self.state.keys.card_id.hex()}, selected={self.selected})"

    @property
    def authenticated(self) -> bool:
        return self._session is not None

    # -- power -----------------------------------------------------------------------------------------
    def drop_session(self) -> None:
        """Forget the session keys, the handshake and the verified PIN (power-off, reset, SM failure)."""
        self._handshake = None
        self._session = None
        self.state.end_session()

    def power_off(self) -> None:
        self.selected = False
        self.drop_session()

    def reset(self) -> None:
        self.power_off()

    # -- dispatch --------------------------------------------------------------------------------------
    def apdu(self, command: bytes) -> bytes:
        parts = split_apdu(command)
        if parts is None:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2, data = parts
        try:
            if cla == apdu.CLA_PLAIN:
                return self._plain(ins, p1, p2, data)
            if not self.selected:
                return SW_CONDITIONS_NOT_SATISFIED
            if cla == apdu.CLA_PROPRIETARY:
                return self._authenticate(ins, p1, p2, data) if ins == apdu.INS_MUTUAL_AUTH else \
                    SW_INS_NOT_SUPPORTED
            if cla == apdu.CLA_SECURE:
                return self._secure(command)
            return SW_CLA_NOT_SUPPORTED
        except CardTorn:
            self.drop_session()
            raise

    def _plain(self, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if ins == apdu.INS_SELECT:
            return self.select(p1, p2, data)
        if not self.selected:
            return SW_CONDITIONS_NOT_SATISFIED
        if ins == apdu.INS_READ_RECORD:
            return self._read_record(p1, p2)
        if ins == apdu.INS_GET_DATA:
            return self._get_data((p1 << 8) | p2)
        return SW_INS_NOT_SUPPORTED

    def select(self, p1: int, p2: int, data: bytes) -> bytes:
        """SELECT by AID; a blocked purse still answers its FCI, with 6283."""
        if p1 != 0x04 or p2 not in (0x00, 0x0C):
            return SW_WRONG_P1P2
        self.drop_session()
        if data != apdu.PURSE_AID:
            self.selected = False
            return SW_FILE_NOT_FOUND
        self.selected = True
        info = self.state.info()
        sw = SW_SELECTED_BLOCKED if info.status is Status.BLOCKED else SW_OK
        return (b"" if p2 == 0x0C else apdu.fci(info)) + sw

    def _read_record(self, p1: int, p2: int) -> bytes:
        if p2 & 0x07 != 0x04:
            return SW_WRONG_P1P2
        sfi = p2 >> 3
        if sfi == apdu.SFI_WALLETS:
            if not 1 <= p1 <= len(self.state.stored.wallets):
                return SW_RECORD_NOT_FOUND
            return self.state.wallet(p1 - 1).encode() + SW_OK
        if sfi == apdu.SFI_LOG:
            entry = self.state.log_entry(p1)
            return SW_RECORD_NOT_FOUND if entry is None else entry + SW_OK
        return SW_FILE_NOT_FOUND

    def _get_data(self, tag: int) -> bytes:
        s = self.state.stored
        values = {apdu.TAG_COUNTER: s.counter.to_bytes(4, "big"),
                  apdu.TAG_LAST_TIME: s.last_time.to_bytes(4, "big"),
                  apdu.TAG_PIN_TRIES: bytes([s.pin_tries]),
                  apdu.TAG_PENDING: b"" if s.pending is None else s.pending.encode()}
        if tag not in values:
            return SW_REFERENCED_DATA_NOT_FOUND
        return tag.to_bytes(2, "big") + bytes([len(values[tag])]) + values[tag] + SW_OK

    # -- mutual authentication -------------------------------------------------------------------------
    def _authenticate(self, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if p2 != 0x00 or p1 not in (1, 2):
            return SW_WRONG_P1P2
        if p1 == 1:
            self.drop_session()
            try:
                started, answer = ps.card_answer(self._private_key, self.certificate, self._ca, data)
            except ps.SessionError:
                return SW_AUTH_FAILED
            if started.time < self.state.stored.last_time:
                return Refusal.TIME.to_bytes(2, "big")
            self._handshake = started
            return answer + SW_OK
        handshake, self._handshake = self._handshake, None
        if handshake is None:
            return SW_CONDITIONS_NOT_SATISFIED
        try:
            session, confirm = ps.card_finish(handshake, data)
        except ps.SessionError:
            return SW_AUTH_FAILED
        try:
            self.state.begin_session(handshake.sam.id, handshake.time)
        except PurseRefused as refused:
            return refused.sw
        self._session = session
        return confirm + SW_OK

    # -- secure messaging ------------------------------------------------------------------------------
    def _secure(self, command: bytes) -> bytes:
        session = self._session
        if session is None or not session.open:
            self.drop_session()
            return SW_SECURITY_NOT_SATISFIED
        try:
            ins, p1, p2, data = ps.unwrap_command(session, command)
        except ps.SecureMessagingError:
            self.drop_session()
            return SW_SM_DATA_INCORRECT
        try:
            answer, sw = self._run(session, ins, p1, p2, data)
        except PurseRefused as refused:
            answer, sw = b"", refused.sw
        except (PurseDataError, ps.SessionError):
            answer, sw = b"", SW_WRONG_DATA
        return ps.wrap_response(session, answer, sw)

    def _run(self, session: ps.Session, ins: int, p1: int, p2: int, data: bytes) -> tuple[bytes, bytes]:
        """(answer data, status word) of one purse command under SM; the rules' refusals raise."""
        st = self.state
        if ins not in _SECURE_INS:
            return b"", SW_INS_NOT_SUPPORTED
        if ins == apdu.INS_VERIFY:
            if (p1, p2) != (0x00, apdu.VERIFY_P2_ENCIPHERED):
                return b"", SW_WRONG_P1P2
            st.verify_pin(ps.decipher_pin(session, data))
            return b"", SW_OK
        if ins == apdu.INS_COMPLETE_PENDING:
            if p1 not in (apdu.COMPLETE_FINAL, apdu.COMPLETE_GRACE) or p2:
                return b"", SW_WRONG_P1P2
            return st.complete(apdu.CompleteRequest.decode(p1, data)), SW_OK
        if (p1, p2) != (0x00, 0x00):
            return b"", SW_WRONG_P1P2
        if ins == apdu.INS_RESERVE:
            return st.reserve(apdu.ReserveRequest.decode(data)).encode(), SW_OK
        if ins == apdu.INS_SETTLE:
            return st.settle(apdu.SettleRequest.decode(data)), SW_OK
        if ins == apdu.INS_INITIALIZE_LOAD:
            return st.init_load(apdu.InitLoadRequest.decode(data)).encode(), SW_OK
        if ins == apdu.INS_LOAD:
            return st.load(apdu.LoadRequest.decode(data)), SW_OK
        return st.apply_script(apdu.ScriptRequest.decode(data)) or b"", SW_OK
