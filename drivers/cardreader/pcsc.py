"""A PC/SC card reader through pyscard's thin `smartcard.scard` layer (pcsc-lite on Linux)."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from contracts.errors import CardError, CardReaderError, CardRemoved, ConfigError
from drivers.url import DeviceUrl

__all__ = ["PcscReader", "open_pcsc_reader"]

_INFINITE_SLICE_MS = 1000    # wait in slices so a dead pcscd is noticed and the deadline kept
_REMOVAL_GRACE_S = 1.5       # pcscd polls presence every 0.4 s; a pulled card first looks like a link error


def _scard() -> ModuleType:
    try:
        from smartcard import scard  # type: ignore[import-untyped]
    except ImportError as exc:
        raise CardReaderError("pyscard is not installed: pip install pyscard "
                              "(Debian: python3-pyscard; it also needs pcscd)") from exc
    module: ModuleType = scard
    return module


def open_pcsc_reader(url: DeviceUrl) -> PcscReader:
    """pcsc://<reader name>, percent-encoded or not (a colon in the name must be written %3A)."""
    name = url.host + url.path
    if not name:
        raise ConfigError("pcsc:// URL needs a reader name", key=url.key)
    return PcscReader(name)


class PcscReader:
    """One named PC/SC reader; exceptions come out as CardRemoved or CardReaderError."""

    def __init__(self, reader_name: str) -> None:
        self.reader_name = reader_name
        self._sc = _scard()
        self._context: Any = None
        self._card: Any = None
        self._protocol: int | None = None

    def __repr__(self) -> str:
        return f"PcscReader({self.reader_name!r})"

    # -- error translation -----------------------------------------------------------------------------
    def _fail(self, hresult: int, action: str, **context: Any) -> CardError:
        sc = self._sc
        message = f"{action}: {sc.SCardGetErrorMessage(hresult)}"
        if hresult in (sc.SCARD_W_REMOVED_CARD, sc.SCARD_E_NO_SMARTCARD, sc.SCARD_W_RESET_CARD,
                       sc.SCARD_W_UNPOWERED_CARD, sc.SCARD_W_UNRESPONSIVE_CARD):
            self._drop_card()
            return CardRemoved(message, reader=self.reader_name, **context)
        if hresult in (sc.SCARD_E_NO_SERVICE, sc.SCARD_E_SERVICE_STOPPED, sc.SCARD_E_INVALID_HANDLE,
                       sc.SCARD_E_NO_READERS_AVAILABLE):
            self._drop_context()   # pcscd restarted or went away: start over on the next call
        return CardReaderError(message, reader=self.reader_name, code=f"0x{hresult & 0xFFFFFFFF:08X}",
                               **context)

    def _ctx(self) -> Any:
        if self._context is None:
            hresult, context = self._sc.SCardEstablishContext(self._sc.SCARD_SCOPE_USER)
            if hresult != self._sc.SCARD_S_SUCCESS:
                raise self._fail(hresult, "cannot reach pcscd")
            self._context = context
        return self._context

    def _drop_card(self) -> None:
        if self._card is not None:
            self._sc.SCardDisconnect(self._card, self._sc.SCARD_LEAVE_CARD)   # dead handle: result ignored
        self._card, self._protocol = None, None

    def _drop_context(self) -> None:
        self._drop_card()
        if self._context is not None:
            self._sc.SCardReleaseContext(self._context)
        self._context = None

    # -- presence --------------------------------------------------------------------------------------
    def _state(self, current: int, timeout_ms: int) -> int | None:
        """Reader state after waiting up to timeout_ms for a change from `current`; None on timeout."""
        sc = self._sc
        hresult, states = sc.SCardGetStatusChange(self._ctx(), timeout_ms, [(self.reader_name, current)])
        if hresult == sc.SCARD_E_TIMEOUT:
            return None
        if hresult != sc.SCARD_S_SUCCESS:
            raise self._fail(hresult, "cannot read the reader state")
        event_state: int = states[0][1]
        if event_state & (sc.SCARD_STATE_UNKNOWN | sc.SCARD_STATE_UNAVAILABLE):
            raise CardReaderError("reader not available", reader=self.reader_name)
        state: int = event_state & ~sc.SCARD_STATE_CHANGED
        return state

    def card_present(self) -> bool:
        state = self._state(self._sc.SCARD_STATE_UNAWARE, 0)
        return bool(state is not None and state & self._sc.SCARD_STATE_PRESENT)

    def _wait(self, want_present: bool, timeout: float) -> bool:
        sc = self._sc
        deadline = time.monotonic() + max(timeout, 0.0)
        state = self._state(sc.SCARD_STATE_UNAWARE, 0) or sc.SCARD_STATE_UNAWARE
        while bool(state & sc.SCARD_STATE_PRESENT) != want_present:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            new_state = self._state(state, min(int(remaining * 1000) + 1, _INFINITE_SLICE_MS))
            if new_state is not None:
                state = new_state
        return True

    def wait_for_card(self, timeout: float) -> bool:
        return self._wait(True, timeout)

    def wait_for_removal(self, timeout: float) -> bool:
        return self._wait(False, timeout)

    # -- session ---------------------------------------------------------------------------------------
    def connect(self) -> bytes:
        """Power the card (T=0 or T=1, whichever it offers) and return its ATR."""
        sc = self._sc
        self._drop_card()
        hresult, card, protocol = sc.SCardConnect(self._ctx(), self.reader_name, sc.SCARD_SHARE_SHARED,
                                                  sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
        if hresult != sc.SCARD_S_SUCCESS:
            raise self._fail(hresult, "cannot connect to the card")
        self._card, self._protocol = card, protocol
        hresult, _reader, _state, _proto, atr = sc.SCardStatus(card)
        if hresult != sc.SCARD_S_SUCCESS:
            raise self._fail(hresult, "cannot read the ATR")
        return bytes(atr)

    def _send(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise CardRemoved("no card connected", reader=self.reader_name, header=apdu[:4].hex())
        sc = self._sc
        hresult, response = sc.SCardTransmit(self._card, self._protocol, list(apdu))
        # vpcd reports a vanished card as success with no bytes; real readers as "not transacted".
        link_failed = hresult in (sc.SCARD_E_NOT_TRANSACTED, sc.SCARD_F_COMM_ERROR) or (
            hresult == sc.SCARD_S_SUCCESS and len(response) < 2)
        if link_failed and self._card_left():
            self._drop_card()
            raise CardRemoved("card removed during an APDU", reader=self.reader_name, header=apdu[:4].hex())
        if hresult != sc.SCARD_S_SUCCESS:
            raise self._fail(hresult, "APDU exchange failed", header=apdu[:4].hex())
        return bytes(response)

    def _card_left(self) -> bool:
        """After a failed exchange: did the card go (as opposed to the reader failing)?"""
        try:
            return self._wait(False, _REMOVAL_GRACE_S)
        except CardError:
            return False

    def transmit(self, apdu: bytes) -> bytes:
        """Exchange one APDU; returns response data + SW1 SW2 (61xx and 6Cxx handled)."""
        from drivers.cardreader import complete_response
        return complete_response(self._send, bytes(apdu))

    def disconnect(self) -> None:
        if self._card is not None:
            self._sc.SCardDisconnect(self._card, self._sc.SCARD_UNPOWER_CARD)
        self._card, self._protocol = None, None

    def close(self) -> None:
        """Release the PC/SC context too."""
        self._drop_context()
