"""The simulated EMV card's transaction half: GENERATE AC (card action analysis), issuer authentication
and issuer scripts. EmvCard (hostsim.cards.emv) mixes this in; the decisions are in that module's docstring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from firmware.tlv import encode
from hostsim import emv_keys
from hostsim.cards.emv_crypto import AAC, ARQC, TC, AcInputs, Cvr, IssuerAuthResult
from hostsim.cards.emv_profile import Personalisation, dol_values
from hostsim.cards.iso7816 import (
    SW_AUTH_FAILED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SM_DATA_INCORRECT,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
)

__all__ = ["CardActionAnalysis"]

CID_REASON_SERVICE_NOT_ALLOWED = 0x01       # CID bits 3-1 (Book 3 table 14)
CID_REASON_PIN_TRY_LIMIT = 0x02
CID_REASON_ISSUER_AUTH_FAILED = 0x03


class CardActionAnalysis:
    """GENERATE AC, EXTERNAL AUTHENTICATE and script commands over the card state EmvCard keeps."""

    _p: Personalisation
    _rng: Callable[[int], bytes]
    atc: int
    pin_try_counter: int
    last_online_atc: int
    application_blocked: bool
    _put_data: dict[int, bytes]
    _selected: str | None
    _pdol_data: bytes | None
    _stage: int
    _awaiting_second: bool
    _arqc: bytes
    _cdol1_data: bytes
    _cdol1_values: dict[int, bytes]
    _issuer_auth: IssuerAuthResult | None
    _cvr: Cvr

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
        # CDA on request whatever the cryptogram: an AAC is signed too (Book 2 6.6.1, as M/Chip cards do)
        self._cvr.cda_first = cda and self._can_cda()
        return self._ac_response(decided | reason, values, self._cdol1_data, self._cvr.cda_first)

    def _second_ac(self, requested: int, cda: bool, data: bytes) -> bytes:
        extra = dol_values(self._p.cdol2, data)
        if extra is None:
            return SW_WRONG_LENGTH
        values = {**self._cdol1_values, **extra}
        self._cvr.unable_to_go_online = extra.get(0x8A) in (b"Y3", b"Z3")
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
        self._cvr.cda_second = cda and self._can_cda()
        return self._ac_response(decided | reason, values, self._cdol1_data + data, self._cvr.cda_second)

    def _can_cda(self) -> bool:
        return self._p.icc_key is not None and self._p.gen_ac_format == 2

    def _ac_response(self, cid: int, values: dict[int, bytes], cdol_data: bytes, cda: bool) -> bytes:
        p, atc = self._p, self.atc.to_bytes(2, "big")
        crypto, key = p.crypto, p.icc_key
        if crypto is None or (cda and key is None):
            return SW_CONDITIONS_NOT_SATISFIED
        self._cvr.pin_try_counter = self.pin_try_counter
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

