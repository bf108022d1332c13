"""The symmetric side of a simulated EMV card: application cryptograms, ARPC checks and script MACs.

Key derivation and MACs come from pyemv (ICC master key option A/B from the issuer master key, PAN and PAN
sequence number, EMV Book 2 A1.4; common session key A1.3; AC by ISO 9797-1 MAC algorithm 3, Book 2 8.1;
ARPC method 1 and 2, Book 2 8.2). The Issuer Application Data and CVR layouts are simplified models of the
published Visa (VIS) and M/Chip formats: enough that the issuer host sees the card's decisions under the AC.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pyemv.cvn
from cryptography.utils import CryptographyDeprecationWarning

from contracts.errors import ConfigError

__all__ = ["AAC", "ARQC", "CRYPTOGRAMS", "TC", "AcInputs", "CardCrypto", "Cvr", "IssuerAuthResult",
           "pin_from_block"]

AAC, TC, ARQC = 0x00, 0x40, 0x80          # Cryptogram Information Data bits 8-7 (Book 3 table 14)
CRYPTOGRAMS = ("visa_cvn10", "visa_cvn18", "mc_cvn16")
# Terminal data every supported CVN puts under the AC, in this order (Book 2 8.1.1, table 26).
AC_TERMINAL_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
ARC_APPROVED = (b"00", b"10", b"11", b"Y1", b"Y3")   # ISO 8583:1987 codes terminals send in 8A
ArpcMethod = Literal[1, 2]


_Cvn = pyemv.cvn.VisaCVN10 | pyemv.cvn.VisaCVN18 | pyemv.cvn.MasterCardCVN16


@contextmanager
def _pyemv_tdes() -> Iterator[None]:
    """pyemv takes TripleDES from cryptography's main module, deprecated there (pyproject pins <48)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


@dataclass
class Cvr:
    """Card Verification Results: what the card did in this transaction."""

    first_ac: int | None = None
    second_ac: int | None = None
    offline_pin: bool = False
    enciphered_pin: bool = False
    pin_failed: bool = False
    pin_try_exceeded: bool = False
    dda: bool = False
    cda_first: bool = False
    cda_second: bool = False
    issuer_auth: bool = False
    issuer_auth_failed: bool = False
    scripts: int = 0
    script_failed: bool = False
    pin_try_counter: int = 0
    unable_to_go_online: bool = False     # the second GENERATE AC carried ARC Y3/Z3


def _ac_bits(ac: int | None, shift: int) -> int:
    """2-bit "AC returned" field: 00 AAC, 01 TC, 10 ARQC / not requested."""
    code = {AAC: 0, TC: 1, ARQC: 2, None: 2}[ac]
    return code << shift


def _visa_cvr(c: Cvr) -> bytes:
    """VIS-style CVR: length 03 then 3 bytes
    (byte 2: ACs, issuer auth, offline PIN; 3: PIN limit; 4: scripts)."""
    b2 = (_ac_bits(c.second_ac, 6) | _ac_bits(c.first_ac, 4) | 0x08 * c.issuer_auth_failed
          | 0x04 * c.offline_pin | 0x02 * c.pin_failed)
    b3 = 0x40 * c.pin_try_exceeded
    b4 = (min(c.scripts, 15) << 4) | 0x08 * c.script_failed | 0x02 * c.dda
    return bytes([0x03, b2, b3, b4])


def _mc_cvr(c: Cvr) -> bytes:
    """M/Chip 4 CVR, 6 bytes, the layout IAD byte 2 = CVN '10' names (Mastercard M/Chip 4 Card Application
    Specifications, CVR; the same table as public EMV tag dictionaries):
    byte 1: b8-7 AC of 2nd GENERATE AC, b6-5 AC of 1st, b4 date check failed, b3 offline PIN performed,
            b2 offline enciphered PIN performed, b1 offline PIN successful;
    byte 2: b8 DDA returned, b7 CDA in 1st GENERATE AC, b6 CDA in 2nd, b5 issuer authentication performed;
    byte 3: b8-5 script counter (low nibble), b4-1 PIN try counter (low nibble);
    byte 4: b7 unable to go online, b6 offline PIN not performed, b5 offline PIN failed, b4 PIN try limit
            exceeded;
    byte 5: b3 issuer authentication failed, b2 script received, b1 script failed; byte 6 RFU."""
    b1 = (_ac_bits(c.second_ac, 6) | _ac_bits(c.first_ac, 4) | 0x04 * c.offline_pin
          | 0x02 * c.enciphered_pin | 0x01 * (c.offline_pin and not c.pin_failed))
    b2 = 0x80 * c.dda | 0x40 * c.cda_first | 0x20 * c.cda_second | 0x10 * c.issuer_auth
    b3 = (min(c.scripts, 15) << 4) | (c.pin_try_counter & 0x0F)
    b4 = (0x40 * c.unable_to_go_online | 0x20 * (not c.offline_pin) | 0x10 * c.pin_failed
          | 0x08 * c.pin_try_exceeded)
    b5 = 0x04 * c.issuer_auth_failed | 0x02 * (c.scripts > 0 or c.script_failed) | 0x01 * c.script_failed
    return bytes([b1, b2, b3, b4, b5, 0])


@dataclass(frozen=True)
class AcInputs:
    """The data one GENERATE AC is computed over."""

    terminal: dict[int, bytes]    # values by tag from the CDOL-related data
    aip: bytes
    atc: bytes
    cvr: Cvr


@dataclass(frozen=True)
class IssuerAuthResult:
    ok: bool
    approved: bool            # ARC (method 1) or CSU "approved" bit (method 2)
    block_application: bool = False


class CardCrypto:
    """One card's cryptogram version: builds IAD and AC, checks ARPCs and script MACs."""

    def __init__(self, cryptogram: str, imk_ac: bytes, imk_smi: bytes, imk_smc: bytes, pan: str,
                 psn: str) -> None:
        classes: dict[str, type[_Cvn]] = {"visa_cvn10": pyemv.cvn.VisaCVN10,
                                          "visa_cvn18": pyemv.cvn.VisaCVN18,
                                          "mc_cvn16": pyemv.cvn.MasterCardCVN16}
        cls = classes.get(cryptogram)
        if cls is None:
            raise ConfigError("unknown cryptogram version", cryptogram=cryptogram,
                              known=",".join(CRYPTOGRAMS))
        try:
            with _pyemv_tdes():
                self._cvn: _Cvn = cls(imk_ac, imk_smi, imk_smc, pan, psn)
        except (TypeError, ValueError) as exc:
            raise ConfigError("issuer master keys must be 16-byte DES keys", cryptogram=cryptogram) from exc
        self.cryptogram = cryptogram
        self.arpc_method: ArpcMethod = 2 if cryptogram == "visa_cvn18" else 1

    def iad(self, cvr: Cvr) -> bytes:
        """Issuer Application Data (9F10): Visa 06 DKI CVN CVR; M/Chip DKI CVN CVR(6) DAC(2) counters(8)."""
        if self.cryptogram == "visa_cvn10":
            return bytes([0x06, 0x01, 0x0A]) + _visa_cvr(cvr)
        if self.cryptogram == "visa_cvn18":
            return bytes([0x06, 0x01, 0x12]) + _visa_cvr(cvr)
        return bytes([0x01, 0x10]) + _mc_cvr(cvr) + bytes(10)

    def ac(self, inputs: AcInputs) -> tuple[bytes, bytes]:
        """(AC, IAD) for the data of one GENERATE AC."""
        amount, other, country, tvr, currency, date, tx_type, un = (
            inputs.terminal[t] for t in AC_TERMINAL_TAGS)
        iad, cvn = self.iad(inputs.cvr), self._cvn
        # VisaCVN18 takes the whole IAD, VisaCVN10 the 4-byte CVR (IAD 4-7), M/Chip CVN 16 the 6-byte CVR.
        card_data = iad if isinstance(cvn, pyemv.cvn.VisaCVN18) else iad[3:7] \
            if isinstance(cvn, pyemv.cvn.VisaCVN10) else iad[2:8]
        with _pyemv_tdes():
            ac = cvn.generate_ac(amount, other, country, tvr, currency, date, tx_type, un,
                                 inputs.aip, inputs.atc, card_data)
        return ac, iad

    def check_arpc(self, arqc: bytes, atc: bytes, issuer_auth_data: bytes) -> IssuerAuthResult:
        """Issuer Authentication Data (91): method 1 ARPC(8)||ARC(2), method 2 ARPC(4)||CSU(4)[||PAD].

        Method 2 CSU byte 2: bit 8 issuer approves, bit 6 block the application (Book 2 8.2.2).
        """
        cvn = self._cvn
        if isinstance(cvn, pyemv.cvn.VisaCVN18):
            if not 8 <= len(issuer_auth_data) <= 16:
                return IssuerAuthResult(False, False)
            arpc, csu, prop = issuer_auth_data[:4], issuer_auth_data[4:8], issuer_auth_data[8:] or None
            with _pyemv_tdes():
                ok = hmac.compare_digest(cvn.generate_arpc(arqc, atc, csu, prop), arpc)
            return IssuerAuthResult(ok, bool(csu[1] & 0x80), bool(csu[1] & 0x20))
        if len(issuer_auth_data) != 10:
            return IssuerAuthResult(False, False)
        arpc, response_code = issuer_auth_data[:8], issuer_auth_data[8:]
        with _pyemv_tdes():
            ok = hmac.compare_digest(cvn.generate_arpc(arqc, response_code), arpc)
        return IssuerAuthResult(ok, response_code in ARC_APPROVED)

    def check_script_mac(self, header: bytes, data: bytes, mac: bytes, arqc: bytes, atc: bytes) -> bool:
        """Secure messaging integrity for an issuer script command
        (Book 2 9.2; MAC over header, ATC, AC, data)."""
        with _pyemv_tdes():
            return hmac.compare_digest(self._cvn.generate_command_mac(header, arqc, atc, data), mac)


def pin_from_block(block: bytes) -> str | None:
    """Plaintext offline PIN block: C=2, N, N PIN digits, 'F' fill (Book 3 6.5.12, table 24)."""
    digits = block.hex().upper()
    count = int(digits[1], 16)
    if digits[0] != "2" or not 4 <= count <= 12:
        return None
    pin, fill = digits[2:2 + count], digits[2 + count:]
    if not pin.isdigit() or fill != "F" * len(fill):
        return None
    return pin
