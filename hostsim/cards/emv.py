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

import hashlib
import os
from collections.abc import Callable
from typing import Any

from firmware.tlv import encode
from hostsim import emv_keys
from hostsim.cards.atr import build_atr
from hostsim.cards.emv_crypto import AAC, ARQC, TC, AcInputs, Cvr, IssuerAuthResult, pin_from_block
from hostsim.cards.emv_profile import PSE_NAME, PSE_SFI, dol_values, load_profile, personalise

__all__ = ["DEFAULT_EMV_ATR", "EmvCard"]

SW_OK = b"\x90\x00"
SW_WARNING_SELECTED_FILE_INVALIDATED = b"\x62\x83"    # blocked application (Book 1 12.3.2)
SW_AUTH_FAILED = b"\x63\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_AUTH_METHOD_BLOCKED = b"\x69\x83"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_SM_DATA_INCORRECT = b"\x69\x88"
SW_WRONG_DATA = b"\x6a\x80"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_REFERENCED_DATA_NOT_FOUND = b"\x6a\x88"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"

CID_REASON_SERVICE_NOT_ALLOWED = 0x01       # CID bits 3-1 (Book 3 table 14)
CID_REASON_PIN_TRY_LIMIT = 0x02
CID_REASON_ISSUER_AUTH_FAILED = 0x03




DEFAULT_EMV_ATR = build_atr(b"FCEMV01")


def _split_apdu(command: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(CLA, INS, P1, P2, data) of a short APDU, cases 1-4 (ISO/IEC 7816-3 12.1); None if malformed."""
    if len(command) < 4:
        return None
    cla, ins, p1, p2 = command[:4]
    if len(command) <= 5:
        return cla, ins, p1, p2, b""
    lc = command[4]
    if lc == 0 or len(command) not in (5 + lc, 6 + lc):    # extended length is not supported
        return None
    return cla, ins, p1, p2, bytes(command[5:5 + lc])


class EmvCard:
    """A contact EMV card with one application; see the module docstring for its decisions."""

    def __init__(self, profile: dict[str, Any], *, pki: emv_keys.Pki | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self._p = personalise(profile, pki)
        self.name = str(profile.get("name", "EMV card"))
        self.atr = self._p.atr or DEFAULT_EMV_ATR
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
        parts = _split_apdu(bytes(command))
        if parts is None:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2, data = parts
        entry = self._handlers.get(ins)
        if entry is None:
            return SW_INS_NOT_SUPPORTED if cla in (0x00, 0x80, 0x84) else SW_CLA_NOT_SUPPORTED
        expected_cla, handler = entry
        if cla != expected_cla:
            return SW_CLA_NOT_SUPPORTED
        return handler(cla, ins, p1, p2, data)

    # -- session state -----------------------------------------------------------------------------
    def _new_session(self) -> None:
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

    # -- card action analysis (Book 3 6.5.5, Book 2 6.6, 8) -----------------------------------------
    def _generate_ac(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        requested, cda = p1 & 0xC0, bool(p1 & 0x10)
        if p2 or p1 & 0x2F or requested == 0xC0:
            return SW_WRONG_P1P2
        if self._selected != "adf" or self._pdol_data is None or self._p.crypto is None:
            return SW_CONDITIONS_NOT_SATISFIED
        if self._stage == 0:
            return self._first_ac(requested, cda, data)
        if not self._awaiting_second:
            return SW_CONDITIONS_NOT_SATISFIED
        if requested == ARQC:
            return SW_WRONG_P1P2
        return self._second_ac(requested, cda, data)

    def _first_ac(self, requested: int, cda: bool, data: bytes) -> bytes:
        values = dol_values(self._p.cdol1, data)
        if values is None:
            return SW_WRONG_LENGTH
        self.atc += 1                                   # one ATC per transaction, used by both ACs
        reason = 0
        if self.application_blocked:
            decided, reason = AAC, CID_REASON_SERVICE_NOT_ALLOWED
        elif self.pin_try_counter == 0 and self._p.pin_try_limit:
            decided, reason = AAC, CID_REASON_PIN_TRY_LIMIT
            self._cvr.pin_try_exceeded = True
        elif requested in (AAC, ARQC):
            decided = requested
        else:
            decided = TC if self._p.offline_tc else ARQC
        self._stage, self._awaiting_second = 1, decided == ARQC
        self._cdol1_data, self._cdol1_values = data, values
        self._cvr.first_ac = decided
        self._cvr.cda_first = cda and decided != AAC and self._can_cda()
        return self._ac_response(decided | reason, values, self._cdol1_data, self._cvr.cda_first)

    def _second_ac(self, requested: int, cda: bool, data: bytes) -> bytes:
        extra = dol_values(self._p.cdol2, data)
        if extra is None:
            return SW_WRONG_LENGTH
        values = {**self._cdol1_values, **extra}
        auth = self._issuer_auth
        issuer_data = extra.get(0x91, b"")
        if auth is None and issuer_data.strip(b"\x00"):
            auth = self._check_issuer_auth(issuer_data)
        reason = 0
        if requested == AAC:
            decided = AAC
        elif auth is not None and not auth.ok:
            decided, reason = AAC, CID_REASON_ISSUER_AUTH_FAILED
        elif self.application_blocked or (auth is not None and not auth.approved):
            decided = AAC
        else:
            decided = TC
        self._stage, self._awaiting_second = 2, False
        self._cvr.second_ac = decided
        self._cvr.cda_second = cda and decided != AAC and self._can_cda()
        return self._ac_response(decided | reason, values, self._cdol1_data + data, self._cvr.cda_second)

    def _can_cda(self) -> bool:
        return self._p.icc_key is not None and self._p.gen_ac_format == 2

    def _ac_response(self, cid: int, values: dict[int, bytes], cdol_data: bytes, cda: bool) -> bytes:
        p, atc = self._p, self.atc.to_bytes(2, "big")
        crypto, key = p.crypto, p.icc_key
        if crypto is None or (cda and key is None):
            return SW_CONDITIONS_NOT_SATISFIED
        ac, iad = crypto.ac(AcInputs(values, p.aip, atc, self._cvr))
        if self._stage == 1:
            self._arqc = ac
        if p.gen_ac_format == 1:
            return encode(0x80, bytes([cid]) + atc + ac + iad) + SW_OK
        if not cda or key is None:
            return encode(0x77, encode(0x9F27, bytes([cid])) + encode(0x9F36, atc) + encode(0x9F26, ac)
                          + encode(0x9F10, iad)) + SW_OK
        # CDA (Book 2 6.6.1): the AC travels inside the signature; the hash covers PDOL and CDOL data and the
        # response's own TLVs in the order returned, less the signature itself.
        head, tail = encode(0x9F27, bytes([cid])) + encode(0x9F36, atc), encode(0x9F10, iad)
        pdol_data = self._pdol_data or b""
        tx_hash = hashlib.sha1(pdol_data + cdol_data + head + tail).digest()
        dynamic_number = self._rng(8)
        icc_dynamic = bytes([len(dynamic_number)]) + dynamic_number + bytes([cid]) + ac + tx_hash
        signature = emv_keys.signed_dynamic_application_data(key, icc_dynamic, values[0x9F37])
        return encode(0x77, head + encode(0x9F4B, signature) + tail) + SW_OK

    # -- issuer authentication and scripts (Book 3 6.5.4, Book 2 8.2, 9) ------------------------------
    def _check_issuer_auth(self, issuer_data: bytes) -> IssuerAuthResult:
        crypto = self._p.crypto
        if crypto is None:
            return IssuerAuthResult(False, False)
        result = crypto.check_arpc(self._arqc, self.atc.to_bytes(2, "big"), issuer_data)
        self._issuer_auth = result
        self._cvr.issuer_auth = True
        self._cvr.issuer_auth_failed = not result.ok
        if result.ok:
            self.last_online_atc = self.atc
            if result.block_application:
                self.application_blocked = True
        return result

    def _external_authenticate(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if p1 or p2:
            return SW_WRONG_P1P2
        if not self._awaiting_second or self._issuer_auth is not None:
            return SW_CONDITIONS_NOT_SATISFIED
        if not 8 <= len(data) <= 16:
            return SW_WRONG_LENGTH
        return SW_OK if self._check_issuer_auth(data).ok else SW_AUTH_FAILED

    def _script(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Issuer script commands with a trailing 8-byte MAC (Book 2 9.2.1, format of the MAC per the CVN)."""
        crypto = self._p.crypto
        if self._stage == 0 or crypto is None or not self._arqc:
            return SW_CONDITIONS_NOT_SATISFIED
        if len(data) < 8:
            return SW_WRONG_LENGTH
        body, mac = data[:-8], data[-8:]
        if ins in (0x1E, 0x18, 0x24) and (p1 or p2 or body):
            return SW_WRONG_P1P2 if p1 or p2 else SW_WRONG_LENGTH
        tag = (p1 << 8) | p2 if p1 else p2
        if ins == 0xDA and tag not in self._p.put_data_tags:
            return SW_REFERENCED_DATA_NOT_FOUND
        header = bytes([cla, ins, p1, p2, len(data)])
        if self._p.script_mac and not crypto.check_script_mac(header, body, mac, self._arqc,
                                                              self.atc.to_bytes(2, "big")):
            self._cvr.script_failed = True
            return SW_SM_DATA_INCORRECT
        self._cvr.scripts += 1
        if ins == 0x1E:
            self.application_blocked = True
        elif ins == 0x18:
            self.application_blocked = False
        elif ins == 0x24:
            self.pin_try_counter = self._p.pin_try_limit
        else:
            self._put_data[tag] = body
        return SW_OK

