"""The issuer's side of EMV online card authentication: verify the ARQC, answer with an ARPC (tag 91).

pyemv does the cryptography (ICC master key option A/B from the IMK, PAN and PAN sequence number, EMV
4.3 Book 2 A1.4; common session key A1.3; AC by ISO 9797-1 MAC algorithm 3, Book 2 8.1; ARPC methods 1
and 2, Book 2 8.2). It has classes for all three cryptogram versions we simulate, so nothing here is
reimplemented:

- Visa CVN 10: option A, no session key, Visa padding, CVR (IAD bytes 4-7) under the AC, ARPC method 1;
- Visa CVN 18: option B, common session key from the ATC, whole IAD under the AC, ARPC method 2 with a
  Card Status Update (VIS 1.6 / Book 2 8.2.2: CSU byte 2 bit 8 "issuer approves");
- Mastercard CVN 16 (M/Chip): option A, Mastercard session key from ATC and UN, 6-byte CVR (IAD bytes
  3-8), ARPC method 1.

The IAD (9F10) layouts match hostsim.cards.emv_crypto: Visa `06 DKI CVN CVR(4)`, M/Chip `DKI CVN CVR(6) ...`.
"""

from __future__ import annotations

import hmac
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pyemv.cvn
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["AC_TERMINAL_TAGS", "CRYPTOGRAMS", "ArqcResult", "cryptogram_version",
           "generate_ac", "issuer_authentication_data", "verify_arqc"]

CRYPTOGRAMS = ("visa_cvn10", "visa_cvn18", "mc_cvn16")
# Terminal data under the AC in this order (EMV Book 2 8.1.1, table 26); 82 and 9F36 follow.
AC_TERMINAL_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
_APPROVING = ("00", "10")  # ISO 8583:1987 field 39 codes that approve (full or partial)
CSU_APPROVED = bytes.fromhex("00800000")  # VIS 1.6 CSU: byte 2 bit 8 = issuer approves online
CSU_DECLINED = bytes.fromhex("00000000")

_Cvn = pyemv.cvn.VisaCVN10 | pyemv.cvn.VisaCVN18 | pyemv.cvn.MasterCardCVN16


_TDES_LOCK = threading.Lock()  # catch_warnings swaps global state: one pyemv call at a time


@contextmanager
def _pyemv_tdes() -> Iterator[None]:
    """pyemv takes TripleDES from cryptography's main module, deprecated there (pyproject pins <48)."""
    with _TDES_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


@dataclass(frozen=True)
class ArqcResult:
    ok: bool
    cryptogram: str | None
    reason: str


def cryptogram_version(iad: bytes) -> str | None:
    """Which CVN made the cryptogram, read from the Issuer Application Data (9F10)."""
    if len(iad) >= 7 and iad[0] == 0x06:  # Visa IAD format 0/1/3: length 06, DKI, CVN, CVR
        return {0x0A: "visa_cvn10", 0x12: "visa_cvn18"}.get(iad[2])
    if len(iad) >= 8 and iad[1] == 0x10:  # M/Chip: DKI, CVN 0x10 = CVN 16
        return "mc_cvn16"
    return None


def _cvn(cryptogram: str, imk_ac: bytes, pan: str, psn: str) -> _Cvn:
    # Only the AC key matters here; the script keys (SMI, SMC) are not used by an ARQC check.
    if cryptogram == "visa_cvn10":
        return pyemv.cvn.VisaCVN10(imk_ac, imk_ac, imk_ac, pan, psn or "00")
    if cryptogram == "visa_cvn18":
        return pyemv.cvn.VisaCVN18(imk_ac, imk_ac, imk_ac, pan, psn or "00")
    return pyemv.cvn.MasterCardCVN16(imk_ac, imk_ac, imk_ac, pan, psn or "00")


def generate_ac(cryptogram: str, imk_ac: bytes, pan: str, psn: str, icc: Mapping[int, bytes]) -> bytes:
    """The AC the card should have computed over the data in icc (tags as ints)."""
    with _pyemv_tdes():
        return _generate_ac(_cvn(cryptogram, imk_ac, pan, psn), icc)


def _generate_ac(cvn: _Cvn, icc: Mapping[int, bytes]) -> bytes:
    terminal = {f"tag_{tag:x}": icc.get(tag, bytes(6)) if tag == 0x9F03 else icc[tag]
                for tag in AC_TERMINAL_TAGS}  # tag_9f02 ... tag_9f37, pyemv's parameter names
    aip, atc, iad = icc[0x82], icc[0x9F36], icc[0x9F10]
    if isinstance(cvn, pyemv.cvn.VisaCVN18):
        return cvn.generate_ac(**terminal, tag_82=aip, tag_9f36=atc, tag_9f10=iad)
    if isinstance(cvn, pyemv.cvn.VisaCVN10):
        return cvn.generate_ac(**terminal, tag_82=aip, tag_9f36=atc, cvr=iad[3:7])
    return cvn.generate_ac(**terminal, tag_82=aip, tag_9f36=atc, cvr=iad[2:8])


def verify_arqc(imk_ac: bytes, pan: str, psn: str, icc: Mapping[int, bytes]) -> ArqcResult:
    """Recompute the ARQC (9F26) from the ICC data of an authorization request."""
    iad = icc.get(0x9F10)
    if iad is None:
        return ArqcResult(False, None, "no issuer application data")
    cryptogram = cryptogram_version(iad)
    if cryptogram is None:
        return ArqcResult(False, None, "unsupported cryptogram version")
    missing = [f"{t:X}" for t in (*AC_TERMINAL_TAGS, 0x82, 0x9F36, 0x9F26) if t not in icc and t != 0x9F03]
    if missing:
        return ArqcResult(False, cryptogram, "missing " + ",".join(missing))
    cid = icc.get(0x9F27)
    if cid is not None and (len(cid) != 1 or cid[0] & 0xC0 != 0x80):
        return ArqcResult(False, cryptogram, "cryptogram is not an ARQC")
    try:
        expected = generate_ac(cryptogram, imk_ac, pan, psn, icc)
    except (ValueError, TypeError):  # wrong-length data elements
        return ArqcResult(False, cryptogram, "malformed cryptogram input")
    if not hmac.compare_digest(expected, icc[0x9F26]):
        return ArqcResult(False, cryptogram, "ARQC does not verify")
    return ArqcResult(True, cryptogram, "ARQC verified")


def issuer_authentication_data(imk_ac: bytes, pan: str, psn: str, icc: Mapping[int, bytes],
                               response_code: str) -> bytes:
    """Tag 91 for the response: method 1 ARPC(8)||ARC(2), method 2 ARPC(4)||CSU(4)."""
    cryptogram = cryptogram_version(icc[0x9F10])
    if cryptogram is None:
        raise ValueError("unsupported cryptogram version")
    arqc = icc[0x9F26]
    with _pyemv_tdes():
        cvn = _cvn(cryptogram, imk_ac, pan, psn)
        if isinstance(cvn, pyemv.cvn.VisaCVN18):
            csu = CSU_APPROVED if response_code in _APPROVING else CSU_DECLINED
            return cvn.generate_arpc(arqc, icc[0x9F36], csu) + csu
        arc = response_code.encode("ascii")  # ARC = the ASCII response code (ISO 8583 field 39)
        return cvn.generate_arpc(arqc, arc) + arc
