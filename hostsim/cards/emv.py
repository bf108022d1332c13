"""A virtual EMV contact card: one payment application personalised from a profile (fixtures/emv/*.toml).

Commands follow EMV 4.3 Book 3 section 6.5 (SELECT, READ RECORD, GET PROCESSING OPTIONS, GET DATA,
INTERNAL AUTHENTICATE, GET CHALLENGE, VERIFY, GENERATE AC, EXTERNAL AUTHENTICATE, and the issuer script
commands APPLICATION BLOCK/UNBLOCK, PIN CHANGE/UNBLOCK, PUT DATA) with ISO/IEC 7816-4 status words.
Counters (ATC, PIN try counter), the application-blocked flag and PUT DATA values survive power cycles, as
on a real card; selection and transaction state do not.

The card's own risk decisions are deliberately simple (first GENERATE AC):
AAC if the application is blocked, the PIN is blocked or the terminal asks for an AAC; ARQC if the terminal
asks for one; TC if the terminal asks for a TC and the profile allows offline approval, else ARQC.
Second GENERATE AC: AAC if asked, or if issuer authentication failed or declined; TC otherwise.
The ATC counts transactions: it steps once, at the first GENERATE AC, and both ACs carry it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from firmware.tlv import encode
from hostsim import emv_keys
from hostsim.cards.atr import build_atr
from hostsim.cards.emv_ac import CardActionAnalysis
from hostsim.cards.emv_crypto import Cvr, IssuerAuthResult, pin_from_block
from hostsim.cards.emv_profile import PSE_NAME, PSE_SFI, load_profile, personalise
from hostsim.cards.iso7816 import (
    SW_AUTH_METHOD_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    split_apdu,
)

__all__ = ["DEFAULT_EMV_ATR", "EmvCard"]

DEFAULT_EMV_ATR = build_atr(b"FCEMV01")


class EmvCard(CardActionAnalysis):
    """A contact EMV card with one application; see the module docstring for its decisions."""

    def __init__(self, profile: dict[str, Any], *, pki: emv_keys.Pki | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self._p = personalise(profile, pki)
        self.name = str(profile.get("name", "EMV card"))
        self.atr = self._p.atr
        self.protocol = self._p.protocol
        self._rng = rng
        self.atc = self._p.atc
        self.pin_try_counter = self._p.pin_try_counter
        self.last_online_atc = 0
        self.application_blocked = False
        self._put_data: dict[int, bytes] = {}
        # INS -> (CLA, handler); 1E APPLICATION BLOCK, 18 UNBLOCK, 24 PIN CHANGE/UNBLOCK,
        # DA PUT DATA are scripts
        self._handlers: dict[int, tuple[int, Callable[[int, int, int, int, bytes], bytes]]] = {
            0xA4: (0x00, self._select), 0xB2: (0x00, self._read_record),
            0xA8: (0x80, self._get_processing_options),
            0xCA: (0x80, self._get_data), 0x88: (0x00, self._internal_authenticate),
            0x84: (0x00, self._get_challenge), 0x20: (0x00, self._verify), 0xAE: (0x80, self._generate_ac),
            0x82: (0x00, self._external_authenticate),
            0x1E: (0x84, self._script), 0x18: (0x84, self._script), 0x24: (0x84, self._script),
            0xDA: (0x84, self._script),
        }
        self._new_session()

    @classmethod
    def from_profile(cls, name: str, **kwargs: Any) -> EmvCard:
        """A card from fixtures/emv/<name>.toml (or a path to a profile)."""
        return cls(load_profile(name), **kwargs)

    def __repr__(self) -> str:  # never the full PAN
        return f"EmvCard({self.name!r}, pan=…{self._p.pan[-4:]})"

    @property
    def pan_last4(self) -> str:
        return self._p.pan[-4:]

    @property
    def track1(self) -> str | None:
        """Magnetic stripe track 1 for the simulator's swipe reader (None: no stripe data in the profile)."""
        return self._p.track1

    @property
    def track2(self) -> str | None:
        return self._p.track2

    # -- card object protocol ----------------------------------------------------------------------
    def power_on(self) -> None:
        self._new_session()

    def power_off(self) -> None:
        self._new_session()

    def reset(self) -> None:
        self._new_session()

    def apdu(self, command: bytes) -> bytes:
        if self._p.chip_fault is not None:             # a broken chip: ATR fine, every command fails
            return self._p.chip_fault
        parts = split_apdu(bytes(command))
        if parts is None:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2, data = parts
        if (cla, ins) == (0x00, 0xC0) and self.protocol == 0:     # a T=1 card has no GET RESPONSE (6D00)
            return self._get_response(p1, p2, data, command[4] if len(command) == 5 else None)
        self._pending = b""
        entry = self._handlers.get(ins)
        if entry is None:
            return SW_INS_NOT_SUPPORTED if cla in (0x00, 0x80, 0x84) else SW_CLA_NOT_SUPPORTED
        expected_cla, handler = entry
        if cla != expected_cla:
            return SW_CLA_NOT_SUPPORTED
        return self._t0_warning(handler(cla, ins, p1, p2, data))

    # -- T=0 transport (EMV Book 1 9.3.1.3, ISO/IEC 7816-3 12.2.5) ------------------------------------
    def _t0_warning(self, response: bytes) -> bytes:
        """Under T=0 a warning (62xx, 63xx) cannot travel with data: the card answers the bare status and
        keeps the data for GET RESPONSE, which the terminal sends with Le = 00 (then again with 6Cxx's Le)."""
        if self.protocol != 0 or len(response) <= 2 or response[-2] not in (0x62, 0x63):
            return response
        self._pending = response[:-2]
        return response[-2:]

    def _get_response(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        pending = self._pending
        if not pending:
            return SW_CONDITIONS_NOT_SATISFIED
        if p1 or p2 or data:
            return SW_WRONG_P1P2 if p1 or p2 else SW_WRONG_LENGTH
        if le != len(pending) % 256:
            return bytes([0x6C, len(pending) % 256])
        self._pending = b""
        return pending + SW_OK

    # -- session state -----------------------------------------------------------------------------
    def _new_session(self) -> None:
        self._pending = b""                        # T=0: response data held back for GET RESPONSE
        self._selected: str | None = None          # None, "pse" or "adf"
        self._pdol_data: bytes | None = None       # set by GET PROCESSING OPTIONS
        self._stage = 0                             # GENERATE ACs answered in this transaction
        self._awaiting_second = False
        self._arqc = b""
        self._cdol1_data = b""
        self._cdol1_values: dict[int, bytes] = {}
        self._challenge: bytes | None = None
        self._issuer_auth: IssuerAuthResult | None = None
        self._cvr = Cvr()

    # -- selection and reading (Book 1 12, Book 3 6.5.11, 6.5.8) ------------------------------------
    def _select(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if p1 != 0x04 or p2 not in (0x00, 0x02, 0x0C):
            return SW_WRONG_P1P2
        if not data:
            return SW_WRONG_LENGTH
        self._new_session()
        p = self._p
        if not p.chip:
            return SW_FILE_NOT_FOUND
        if data == PSE_NAME and p.pse and p2 != 0x02:
            self._selected = "pse"
            return (b"" if p2 == 0x0C else p.pse_fci) + SW_OK
        if len(data) >= 5 and p.aid.startswith(data) and p2 != 0x02:   # partial name: first occurrence only
            self._selected = "adf"
            status = SW_WARNING_SELECTED_FILE_INVALIDATED if self.application_blocked else SW_OK
            return (b"" if p2 == 0x0C else p.fci) + status
        return SW_FILE_NOT_FOUND

    def _read_record(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        sfi = p2 >> 3
        if p2 & 0x07 != 0x04 or p1 == 0 or sfi == 0:
            return SW_WRONG_P1P2
        if self._selected == "pse":
            if sfi != PSE_SFI:
                return SW_FILE_NOT_FOUND
            record = self._p.pse_records.get(p1)
        elif self._selected == "adf":
            if not any(key[0] == sfi for key in self._p.records):
                return SW_FILE_NOT_FOUND
            record = self._p.records.get((sfi, p1))
        else:
            return SW_CONDITIONS_NOT_SATISFIED
        return SW_RECORD_NOT_FOUND if record is None else record + SW_OK

    def _get_processing_options(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Book 3 6.5.8: the PDOL-related data in tag 83, answered with AIP and AFL."""
        if p1 or p2:
            return SW_WRONG_P1P2
        if self._selected != "adf" or self._pdol_data is not None or self.application_blocked \
                or self.atc >= 0xFFFF:
            return SW_CONDITIONS_NOT_SATISFIED
        if len(data) < 2 or data[0] != 0x83:
            return SW_WRONG_DATA if data else SW_WRONG_LENGTH
        if data[1] != len(data) - 2 or data[1] != sum(length for _, length in self._p.pdol):
            return SW_WRONG_LENGTH
        self._pdol_data = data[2:]
        p = self._p
        if p.gpo_format == 1:
            return encode(0x80, p.aip + p.afl) + SW_OK
        return encode(0x77, encode(0x82, p.aip) + encode(0x94, p.afl)) + SW_OK

    def _get_data(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Book 3 6.5.7: ATC, PIN try counter, last online ATC and PUT DATA values."""
        if self._selected != "adf":
            return SW_CONDITIONS_NOT_SATISFIED
        tag = (p1 << 8) | p2 if p1 else p2
        values = {0x9F36: self.atc.to_bytes(2, "big"), 0x9F17: bytes([self.pin_try_counter]),
                  0x9F13: self.last_online_atc.to_bytes(2, "big"), **self._put_data}
        value = values.get(tag)
        return SW_REFERENCED_DATA_NOT_FOUND if value is None else encode(tag, value) + SW_OK

    # -- offline data authentication and cardholder verification (Book 2 6.5, 7.2; Book 3 6.5.9, 6.5.12)
    def _internal_authenticate(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if self._p.icc_key is None:
            return SW_INS_NOT_SUPPORTED
        if p1 or p2:
            return SW_WRONG_P1P2
        if self._selected != "adf" or self._pdol_data is None:
            return SW_CONDITIONS_NOT_SATISFIED
        if not data:
            return SW_WRONG_LENGTH
        dynamic_number = self._rng(8)                     # ICC Dynamic Number (9F4C)
        signature = emv_keys.signed_dynamic_application_data(
            self._p.icc_key, bytes([len(dynamic_number)]) + dynamic_number, data)
        self._cvr.dda = True
        if self._p.internal_auth_format == 1:
            return encode(0x80, signature) + SW_OK
        return encode(0x77, encode(0x9F4B, signature)) + SW_OK

    def _get_challenge(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if p1 or p2:
            return SW_WRONG_P1P2
        if data:
            return SW_WRONG_LENGTH
        self._challenge = self._rng(8)
        return self._challenge + SW_OK

    def _verify(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Offline PIN: plaintext (P2 80) or enciphered with the ICC key (P2 88, Book 2 7.2)."""
        if p1 or p2 not in (0x80, 0x88):
            return SW_WRONG_P1P2
        if self._selected != "adf":
            return SW_CONDITIONS_NOT_SATISFIED
        if self.pin_try_counter == 0:
            return SW_AUTH_METHOD_BLOCKED
        if not data:                                      # ISO 7816-4: tries left, no attempt counted
            return bytes([0x63, 0xC0 | min(self.pin_try_counter, 15)])
        if p2 == 0x80:
            if len(data) != 8:
                return SW_WRONG_LENGTH
            block = data
        else:
            key, challenge, self._challenge = self._p.icc_key, self._challenge, None
            if key is None:
                return SW_REFERENCED_DATA_NOT_FOUND
            if challenge is None:
                return SW_CONDITIONS_NOT_SATISFIED
            if len(data) != key.size or int.from_bytes(data, "big") >= key.n:
                return SW_WRONG_LENGTH if len(data) != key.size else SW_WRONG_DATA
            plain = key.private(data)                     # 7F || PIN block || ICC UN || random pad
            if plain[0] != 0x7F or plain[9:17] != challenge:
                return SW_WRONG_DATA
            block = plain[1:9]
            self._cvr.enciphered_pin = True
        pin = pin_from_block(block)
        if pin is None:
            return SW_WRONG_DATA
        self._cvr.offline_pin = True
        if pin == self._p.pin:
            self.pin_try_counter = self._p.pin_try_limit
            self._cvr.pin_failed = False
            return SW_OK
        self.pin_try_counter -= 1
        self._cvr.pin_failed = True
        self._cvr.pin_try_exceeded = self.pin_try_counter == 0
        return bytes([0x63, 0xC0 | min(self.pin_try_counter, 15)])
