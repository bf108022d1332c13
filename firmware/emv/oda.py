"""Offline data authentication: choose SDA, DDA or CDA, recover the keys, verify (EMV 4.4 Book 2 5-6,
Book 3 10.3). Failures set TVR bits and never raise; only card communication errors propagate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts.errors import CardError, MessageError
from firmware import tlv
from firmware.emv.apdu import Transmitter, exchange, internal_authenticate
from firmware.emv.certs import (
    PublicKey,
    recover_icc_key,
    recover_issuer_key,
    sda_data_auth_code,
    signed_dynamic_data,
)
from firmware.emv.data import DataStore, TsiBit, TvrBit, build_dol, parse_dol

__all__ = ["OdaState", "choose_method", "perform_oda", "pin_encipherment_key", "verify_cda"]

CaKeys = Mapping[tuple[str, int], tuple[int, int]]
_FAILED = {"sda": TvrBit.SDA_FAILED, "dda": TvrBit.DDA_FAILED, "cda": TvrBit.CDA_FAILED}


@dataclass
class OdaState:
    method: str = "none"                 # "sda" | "dda" | "cda" | "none"
    failed: bool = False
    reason: str = ""
    issuer_key: PublicKey | None = None
    icc_key: PublicKey | None = None
    static_data: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cda_ready(self) -> bool:
        return self.method == "cda" and not self.failed and self.icc_key is not None


def choose_method(aip: bytes, capabilities: bytes) -> str:
    """CDA before DDA before SDA, as both card (AIP byte 1) and terminal (9F33 byte 3) support
    (Book 3 10.3)."""
    card, term = aip[0], capabilities[2]
    if card & 0x01 and term & 0x08:
        return "cda"
    if card & 0x20 and term & 0x40:
        return "dda"
    if card & 0x40 and term & 0x80:
        return "sda"
    return "none"


def _fail(store: DataStore, state: OdaState, reason: str, *, missing: bool = False) -> OdaState:
    state.failed, state.reason = True, reason
    if missing:
        store.tvr.set(TvrBit.ICC_DATA_MISSING)
    if state.method in _FAILED:
        store.tvr.set(_FAILED[state.method])
    return state


def _pan(store: DataStore) -> str:
    return (store.get(0x5A) or b"").hex().upper().rstrip("F")


def _issuer_key(store: DataStore, ca_keys: CaKeys, aid: bytes,
                today: dt.date) -> tuple[PublicKey | None, str, bool]:
    index, cert, exponent = store.get(0x8F), store.get(0x90), store.get(0x9F32)
    if index is None or cert is None or exponent is None or len(index) != 1:
        return None, "CA index, issuer certificate or exponent missing", True
    ca = ca_keys.get((aid[:5].hex().upper(), index[0]))
    if ca is None:
        return None, f"no CA public key for index {index[0]:02X}", False
    key, reason = recover_issuer_key(cert, store.get(0x92) or b"", exponent, PublicKey(*ca), _pan(store),
                                     today)
    return key, reason, False


def _static_data(store: DataStore, records: bytes | None) -> bytes | None:
    """Records flagged by the AFL, then the values named by the tag list 9F4A (only 82 allowed)."""
    if records is None:
        return None
    tag_list = store.get(0x9F4A)
    if not tag_list:
        return records
    if tag_list != b"\x82":
        return None
    return records + (store.get(0x82) or b"")


def perform_oda(reader: Transmitter, store: DataStore, ca_keys: CaKeys, aid: bytes, oda_records: bytes | None,
                capabilities: bytes, default_ddol: bytes, today: dt.date) -> OdaState:
    """Run SDA or DDA now, or prepare CDA (ICC key recovered) for the GENERATE AC."""
    state = OdaState(method=choose_method(store.get(0x82) or b"\x00\x00", capabilities))
    if state.method == "none":
        store.tvr.set(TvrBit.ODA_NOT_PERFORMED)
        return state
    store.tsi.set(TsiBit.ODA_PERFORMED)
    if state.method == "sda":
        store.tvr.set(TvrBit.SDA_SELECTED)
    state.static_data = _static_data(store, oda_records)
    if state.static_data is None:
        return _fail(store, state, "static data for ODA unavailable (record format or tag list)")
    state.issuer_key, reason, missing = _issuer_key(store, ca_keys, aid, today)
    if state.issuer_key is None:
        return _fail(store, state, reason, missing=missing)
    if state.method == "sda":
        signed = store.get(0x93)
        if signed is None:
            return _fail(store, state, "signed static application data missing", missing=True)
        dac = sda_data_auth_code(signed, state.issuer_key, state.static_data)
        if dac is None:
            return _fail(store, state, "signed static application data does not verify")
        store.set(0x9F45, dac)
        return state
    cert, exponent = store.get(0x9F46), store.get(0x9F47)
    if cert is None or exponent is None:
        return _fail(store, state, "ICC certificate or exponent missing", missing=True)
    state.icc_key, reason = recover_icc_key(cert, store.get(0x9F48) or b"", exponent, state.issuer_key,
                                            _pan(store), state.static_data, today)
    if state.icc_key is None:
        return _fail(store, state, reason)
    if state.method == "dda":
        _dda(reader, store, state, state.icc_key, default_ddol)
    return state


def _dda(reader: Transmitter, store: DataStore, state: OdaState, icc_key: PublicKey,
         default_ddol: bytes) -> None:
    """INTERNAL AUTHENTICATE with the DDOL and verify the answer (Book 2 6.5, Book 3 6.5.9)."""
    ddol = store.get(0x9F49)
    if ddol is None:
        if not default_ddol:
            _fail(store, state, "no DDOL", missing=True)
            return
        ddol = default_ddol
    try:
        if all(tag != 0x9F37 for tag, _ in parse_dol(ddol)):
            _fail(store, state, "DDOL lacks the unpredictable number")
            return
        ddol_data = build_dol(ddol, store)
    except CardError:
        _fail(store, state, "DDOL is malformed")
        return
    resp = exchange(reader, internal_authenticate(ddol_data), "internal_authenticate")
    if not resp.ok:
        _fail(store, state, f"INTERNAL AUTHENTICATE refused {resp.swhex}")
        return
    try:
        objects = tlv.parse(resp.data)
    except MessageError:
        objects = []
    if len(objects) != 1 or objects[0][0] not in (0x80, 0x77):
        _fail(store, state, "INTERNAL AUTHENTICATE answer has the wrong template")
        return
    tag, value = objects[0]
    if tag == 0x77:
        try:
            found = tlv.find(value, 0x9F4B)
        except MessageError:
            found = None
        if found is None:
            _fail(store, state, "INTERNAL AUTHENTICATE answer lacks 9F4B", missing=True)
            return
        value = found
    dynamic = signed_dynamic_data(value, icc_key, ddol_data)
    if dynamic is None or not dynamic or dynamic[0] + 1 > len(dynamic):
        _fail(store, state, "signed dynamic application data does not verify")
        return
    store.set(0x9F4C, dynamic[1:1 + dynamic[0]])


def verify_cda(store: DataStore, state: OdaState, objects: Sequence[tuple[int, bytes]],
               dol_data: bytes) -> bytes | None:
    """Check the 9F4B of a format 2 GENERATE AC answer (Book 2 6.6.2); the Application Cryptogram or None.

    dol_data: PDOL data, CDOL1 data (and CDOL2 data for the second GENERATE AC), as sent.
    """
    fields = dict(objects)
    signed, cid = fields.get(0x9F4B), fields.get(0x9F27)
    un = store.get(0x9F37) or b""
    if state.icc_key is None or signed is None or cid is None:
        _fail(store, state, "CDA signature or CID missing")
        return None
    dynamic = signed_dynamic_data(signed, state.icc_key, un)
    if dynamic is None or not dynamic or len(dynamic) < dynamic[0] + 30:
        _fail(store, state, "CDA signature does not verify")
        return None
    k = dynamic[0]
    number, sig_cid = dynamic[1:1 + k], dynamic[1 + k:2 + k]
    ac, tdhc = dynamic[2 + k:10 + k], dynamic[10 + k:30 + k]
    if sig_cid != cid:
        _fail(store, state, "CDA: CID in the signature differs from 9F27")
        return None
    response = b"".join(tlv.encode(t, v) for t, v in objects if t != 0x9F4B)
    if hashlib.sha1(dol_data + response).digest() != tdhc:
        _fail(store, state, "CDA: transaction data hash code does not match")
        return None
    store.set(0x9F4C, number)
    return ac


def pin_encipherment_key(store: DataStore, state: OdaState, ca_keys: CaKeys, aid: bytes,
                         today: dt.date) -> PublicKey | None:
    """The ICC PIN encipherment key (9F2D) or else the ICC public key (Book 2 7.1); None if unavailable."""
    issuer = state.issuer_key
    if issuer is None:
        issuer, _, _ = _issuer_key(store, ca_keys, aid, today)
    if issuer is None:
        return None
    pin_cert, pin_exp = store.get(0x9F2D), store.get(0x9F2E)
    if pin_cert is not None and pin_exp is not None:
        key, _ = recover_icc_key(pin_cert, store.get(0x9F2F) or b"", pin_exp, issuer, _pan(store), b"", today)
        return key
    if state.icc_key is not None:
        return state.icc_key
    cert, exponent, static = store.get(0x9F46), store.get(0x9F47), state.static_data
    if cert is None or exponent is None or static is None:
        return None
    key, _ = recover_icc_key(cert, store.get(0x9F48) or b"", exponent, issuer, _pan(store), static, today)
    return key
