"""The terminal between a purse card and its SAM: it relays their messages and holds no purse key.

open() selects the purse, runs the mutual authentication (the SAM's hello, the card's answer, the SAM's
proof, the card's confirmation: contracts.purse_session) and checks that the SAM authenticated the purse
SELECT named. After that every purse command goes to the SAM to be wrapped (secure messaging under the
session key), to the card, and back to the SAM to be unwrapped; the PIN goes from the PIN pad to the SAM,
which enciphers it for the card. A card's refusal is a PurseRefused naming contracts.purse_wallets.Refusal;
a card that left the reader is the reader's CardRemoved.
"""

from __future__ import annotations

from contracts import purse_apdu as card_apdu
from contracts import purse_sam_apdu as sam_apdu
from contracts.errors import CardError
from contracts.purse_records import SIGNED_LEN
from contracts.purse_wallets import LogEntry, PurseDataError, PurseInfo, Refusal, Wallet, parse_fci
from firmware.emv.apdu import Transmitter

__all__ = ["PurseChannel", "PurseRefused", "SamError"]

SW_OK = 0x9000
SW_BLOCKED = 0x6283                   # SELECT of a blocked purse: its answer follows all the same
SW_RECORD_NOT_FOUND = 0x6A83


class PurseRefused(CardError):
    """The purse refused a command; refusal says why (None: a status word we do not know)."""

    def __init__(self, sw: int) -> None:
        self.refusal = Refusal.of(sw)
        self.sw = sw
        super().__init__("the purse refused", sw=f"{sw:04X}",
                         reason=self.refusal.name.lower() if self.refusal else "unknown")

    @property
    def tries_left(self) -> int | None:
        return self.sw & 0x0F if self.refusal is Refusal.WRONG_PIN else None


class SamError(CardError):
    """The terminal's SAM refused or is missing: no purse sale until it is back."""


class PurseChannel:
    def __init__(self, card: Transmitter, sam: Transmitter) -> None:
        self.card, self.sam = card, sam
        self.info: PurseInfo | None = None
        self.sam_id: bytes | None = None         # the SAM's, once open() selected it

    # -- plain exchanges ----------------------------------------------------------------------------
    def _card(self, command: card_apdu.Command, *, ok: tuple[int, ...] = (SW_OK,)) -> bytes:
        data, sw = card_apdu.split_response(self.card.transmit(command.to_bytes()))
        if sw not in ok:
            raise PurseRefused(sw)
        return data

    def _sam(self, command: bytes) -> bytes:
        return self.sam_exchange(self.sam, command)

    @staticmethod
    def sam_exchange(sam: Transmitter, command: bytes) -> bytes:
        """One command to the SAM: its answer data; SamError for a refusal or a SAM that does not answer
        (never the driver's card's fault)."""
        try:
            data, sw = sam_apdu.split_answer(sam.transmit(command))
        except CardError as exc:
            raise SamError("the SAM does not answer", error=str(exc)) from exc
        if sw != SW_OK:
            raise SamError("the SAM refused", sw=f"{sw:04X}", ins=f"{command[1]:02X}")
        return data

    @classmethod
    def sam_identity(cls, sam: Transmitter) -> bytes:
        """The SAM's id (SELECT); SamError when it is not personalised."""
        info = sam_apdu.parse_fci(cls.sam_exchange(sam, sam_apdu.select()))
        if info.state is not sam_apdu.SamState.PERSONALIZED:
            raise SamError("the SAM is not personalised", state=info.state.name)
        return info.sam_id

    def select(self) -> PurseInfo:
        """The purse's summary (SELECT); PurseRefused when the card has no purse."""
        try:
            self.info = parse_fci(self._card(card_apdu.select(), ok=(SW_OK, SW_BLOCKED)))
        except PurseDataError as exc:
            raise CardError("the purse answered SELECT with malformed data", reason=exc.reason) from exc
        return self.info

    def open(self, time: int) -> PurseInfo:
        """SELECT, then authenticate card and SAM to each other; time is the terminal's clock, which the
        card takes as the transaction time (never earlier than its last)."""
        info = self.select()
        self.sam_id = self.sam_identity(self.sam)      # SELECT: a new session, any earlier one ends
        hello = self._sam(sam_apdu.auth_hello(time))
        answer = self._card(card_apdu.mutual_authenticate(1, hello))
        proof, purse_id = sam_apdu.parse_proof(self._sam(sam_apdu.auth_proof(answer)))
        if purse_id != info.purse_id:
            raise CardError("the card that authenticated is not the purse selected")
        confirm = self._card(card_apdu.mutual_authenticate(2, proof))
        self._sam(sam_apdu.auth_confirm(confirm))
        return info

    def wallets(self, count: int) -> list[Wallet]:
        try:
            return [Wallet.decode(self._card(card_apdu.read_wallet(n))) for n in range(count)]
        except PurseDataError as exc:
            raise CardError("a wallet record is malformed", reason=exc.reason) from exc

    def log(self) -> list[LogEntry]:
        """The card's log, newest first."""
        out: list[LogEntry] = []
        for index in range(1, card_apdu.LOG_SIZE + 1):
            data, sw = card_apdu.split_response(self.card.transmit(card_apdu.read_log(index).to_bytes()))
            if sw == SW_RECORD_NOT_FOUND:
                break
            if sw != SW_OK:
                raise PurseRefused(sw)
            try:
                out.append(LogEntry.decode(data))
            except PurseDataError as exc:
                raise CardError("a log record is malformed", reason=exc.reason) from exc
        return out

    # -- under secure messaging ---------------------------------------------------------------------
    def _relay(self, wrapped: bytes) -> bytes:
        card_answer = self.card.transmit(wrapped)
        data, sw = sam_apdu.parse_unwrapped(self._sam(sam_apdu.unwrap(card_answer)))
        if sw != SW_OK:
            raise PurseRefused(sw)
        return data

    def send(self, command: card_apdu.Command) -> bytes:
        """A purse command through the session: the card's answer data; PurseRefused on a refusal."""
        c = command
        return self._relay(self._sam(sam_apdu.wrap(c.cla, c.ins, c.p1, c.p2, c.data)))

    def verify_pin(self, pin: str) -> None:
        """The PIN, enciphered by the SAM for the card; PurseRefused (WRONG_PIN with tries_left, or
        PIN_BLOCKED) when the card says no."""
        self._relay(self._sam(sam_apdu.encipher_pin(pin)))

    def reserve(self, request: card_apdu.ReserveRequest) -> card_apdu.ReserveAnswer:
        return card_apdu.ReserveAnswer.decode(self.send(card_apdu.reserve(request)))

    def settle(self, counter: int, final_amount: int) -> bytes:
        """The signed record of the debit (60 bytes)."""
        return self._signed(self.send(card_apdu.settle(card_apdu.SettleRequest(counter, final_amount))))

    def complete(self, counter: int, final_amount: int | None) -> bytes:
        """COMPLETE PENDING: with the final amount (this SAM reserved it) or, None, the whole reserve after
        the grace time; the signed record."""
        request = card_apdu.CompleteRequest(counter, final_amount)
        return self._signed(self.send(card_apdu.complete_pending(request)))

    @staticmethod
    def _signed(data: bytes) -> bytes:
        if len(data) != SIGNED_LEN:
            raise CardError("the purse answered a record of the wrong length", length=len(data))
        return data

    def mac_record(self, signed: bytes) -> tuple[int, bytes]:
        """The SAM's sequence number and MAC over a record it forwards."""
        return sam_apdu.parse_record_mac(self._sam(sam_apdu.mac_record(signed)))
