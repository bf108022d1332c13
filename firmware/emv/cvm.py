"""Cardholder verification for an unattended terminal (EMV 4.4 Book 3 10.5 and Annex C3, Book 2 7).

Supported CVMs: offline plaintext PIN (01), online enciphered PIN (02), offline enciphered PIN (04),
no CVM (1F). Signature (1E) and PIN + signature (03, 05) cannot be checked without an attendant.
PIN digits never reach this module: the PIN pad hands over an enciphered online block, or an object
that yields the ISO 9564 format 2 plaintext block for VERIFY, which is wiped after sending.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from contracts.errors import CardError, PinPadError
from firmware.emv.apdu import Transmitter, exchange, get_challenge, get_data, verify
from firmware.emv.certs import PublicKey
from firmware.emv.data import DataStore, TsiBit, TvrBit

__all__ = ["CvmOutcome", "PinEntry", "PinInput", "PinKind", "PlainPinBlockSource", "perform_cvm"]

PinKind = Literal["online", "offline"]
FAIL_CVM, PLAIN_PIN, ONLINE_PIN = 0x00, 0x01, 0x02
PLAIN_PIN_SIGNATURE, ENC_PIN, ENC_PIN_SIGNATURE = 0x03, 0x04, 0x05
SIGNATURE, NO_CVM = 0x1E, 0x1F
RECOGNISED = frozenset({FAIL_CVM, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIGNATURE, ENC_PIN, ENC_PIN_SIGNATURE,
                        SIGNATURE, NO_CVM})
# 9F33 byte 2 bit per CVM (Book 4 A2); 00 "fail CVM processing" is always "supported".
_CAPABILITY = {PLAIN_PIN: 0x80, ONLINE_PIN: 0x40, SIGNATURE: 0x20, ENC_PIN: 0x10, NO_CVM: 0x08}
RESULT_UNKNOWN, RESULT_FAILED, RESULT_SUCCESSFUL = 0x00, 0x01, 0x02
_MAX_PIN_ATTEMPTS = 15


class PlainPinBlockSource(Protocol):
    def plain_pin_block_for_card(self) -> bytearray:
        """The 8-byte ISO 9564 format 2 block for VERIFY; the kernel wipes it after use."""
        ...


@dataclass(frozen=True, repr=False)
class PinInput:
    """What the PIN pad returns: an online block, an offline source, or neither (bypass)."""

    online_block: bytes | None = None
    offline: PlainPinBlockSource | None = None

    @property
    def bypassed(self) -> bool:
        return self.online_block is None and self.offline is None

    def __repr__(self) -> str:
        kind = "online" if self.online_block else "offline" if self.offline else "bypass"
        return f"PinInput({kind})"


# (kind, PIN tries left for offline PIN, PAN): an ISO 9564 format 4 online block binds the PAN.
PinEntry = Callable[[PinKind, "int | None", str], PinInput]


@dataclass(frozen=True, repr=False)
class CvmOutcome:
    results: bytes                    # 9F34
    online_pin_block: bytes | None    # for ISO 8583 field 52

    def __repr__(self) -> str:
        return f"CvmOutcome({self.results.hex().upper()}, online_pin={self.online_pin_block is not None})"


def _condition(store: DataStore, cond: int, cvm: int, amount: int, x: int, y: int,
               capabilities: bytes, terminal_type: int) -> bool:
    """Book 3 Annex C3 table 40."""
    tx_type = (store.get(0x9C) or b"\x00")[0]
    unattended = terminal_type & 0x0F in (4, 5, 6)
    cash, cashback = tx_type == 0x01, tx_type == 0x09
    if cond == 0x00:
        return True
    if cond == 0x01:
        return unattended and cash
    if cond == 0x02:
        return not cash and not cashback
    if cond == 0x03:
        return _supported(cvm, capabilities)
    if cond == 0x04:
        return cash and not unattended
    if cond == 0x05:
        return cashback
    if cond in (0x06, 0x07, 0x08, 0x09):
        currency = store.get(0x9F42)
        if currency is None or currency != store.get(0x5F2A):
            return False
        limit = x if cond in (0x06, 0x07) else y
        return amount < limit if cond in (0x06, 0x08) else amount > limit
    return False


def _supported(cvm: int, capabilities: bytes) -> bool:
    if cvm == FAIL_CVM:
        return True
    if cvm in (PLAIN_PIN_SIGNATURE, ENC_PIN_SIGNATURE):
        base = PLAIN_PIN if cvm == PLAIN_PIN_SIGNATURE else ENC_PIN
        return bool(capabilities[1] & _CAPABILITY[base]) and bool(capabilities[1] & _CAPABILITY[SIGNATURE])
    bit = _CAPABILITY.get(cvm)
    return bit is not None and bool(capabilities[1] & bit)


class _Verifier:
    """Runs one CVM; remembers a PIN bypass so later PIN CVMs count as bypassed too (Book 3 10.5.1)."""

    def __init__(self, reader: Transmitter, store: DataStore, pin_entry: PinEntry,
                 pin_key: Callable[[], PublicKey | None]) -> None:
        self.reader, self.store, self.pin_entry, self.pin_key = reader, store, pin_entry, pin_key
        self.bypassed = False
        self.online_block: bytes | None = None

    def run(self, cvm: int) -> int | None:
        """RESULT_* on success/unknown, None when the CVM failed."""
        if cvm == NO_CVM:
            return RESULT_SUCCESSFUL
        if cvm == ONLINE_PIN:
            return self._online()
        if cvm in (PLAIN_PIN, ENC_PIN):
            return self._offline(enciphered=cvm == ENC_PIN)
        return None

    def _pan(self) -> str:
        return (self.store.get(0x5A) or b"").hex().upper().rstrip("F")

    def _bypass(self) -> None:
        self.bypassed = True
        self.store.tvr.set(TvrBit.PIN_REQUIRED_NOT_ENTERED)

    def _online(self) -> int | None:
        if self.bypassed:
            return None
        entered = self.pin_entry("online", None, self._pan())
        if entered.online_block is None:
            self._bypass()
            return None
        self.online_block = bytes(entered.online_block)
        self.store.tvr.set(TvrBit.ONLINE_PIN_ENTERED)
        return RESULT_UNKNOWN

    def _tries_left(self) -> int | None:
        resp = exchange(self.reader, get_data(0x9F17), "get_data_pin_try_counter")
        if not resp.ok or len(resp.data) < 4 or resp.data[:3] != b"\x9f\x17\x01":
            return None
        return resp.data[3]

    def _offline(self, *, enciphered: bool) -> int | None:
        if self.bypassed:
            return None
        key = self.pin_key() if enciphered else None
        if enciphered and key is None:
            return None      # no PIN encipherment key: this CVM cannot be performed
        tries = self._tries_left()
        for _ in range(_MAX_PIN_ATTEMPTS):
            if tries == 0:
                self.store.tvr.set(TvrBit.PIN_TRY_LIMIT_EXCEEDED)
                return None
            entered = self.pin_entry("offline", tries, self._pan())
            if entered.offline is None:
                self._bypass()
                return None
            sw = self._send(entered.offline, key)
            if sw is None:
                return None
            if sw == 0x9000:
                return RESULT_SUCCESSFUL
            if sw in (0x6983, 0x6984):
                self.store.tvr.set(TvrBit.PIN_TRY_LIMIT_EXCEEDED)
                return None
            if sw & 0xFFF0 != 0x63C0:
                return None
            tries = sw & 0x0F
        return None

    def _send(self, source: PlainPinBlockSource, key: PublicKey | None) -> int | None:
        block = source.plain_pin_block_for_card()
        message = bytearray()
        try:
            if len(block) != 8 or block[0] >> 4 != 0x2:
                raise PinPadError("PIN pad gave a block that is not ISO 9564 format 2")
            if key is None:
                command = verify(block, enciphered=False)
            else:
                challenge = exchange(self.reader, get_challenge(), "get_challenge")
                if not challenge.ok or len(challenge.data) != 8:
                    return None
                # Book 2 7.2: '7F' | PIN block | ICC unpredictable number | random pad, then RSA.
                message += b"\x7f" + block + challenge.data + secrets.token_bytes(key.length - 17)
                value = int.from_bytes(message, "big")
                if value >= key.modulus:
                    return None
                command = verify(pow(value, key.exponent, key.modulus).to_bytes(key.length, "big"),
                                 enciphered=True)
            return exchange(self.reader, command, "verify").sw
        finally:
            for buf in (block, message):
                for i in range(len(buf)):
                    buf[i] = 0


def perform_cvm(reader: Transmitter, store: DataStore, amount: int, pin_entry: PinEntry, capabilities: bytes,
                terminal_type: int, pin_key: Callable[[], PublicKey | None]) -> CvmOutcome:
    """Walk the CVM list 8E; sets 9F34, the TVR CVM bits and TSI 'cardholder verification performed'."""
    aip = store.get(0x82) or b"\x00\x00"
    if not aip[0] & 0x10:      # card does not support cardholder verification
        store.set(0x9F34, b"\x3f\x00\x00")
        return CvmOutcome(b"\x3f\x00\x00", None)
    store.tsi.set(TsiBit.CARDHOLDER_VERIFICATION_PERFORMED)
    cvm_list = store.get(0x8E)
    if cvm_list is None or len(cvm_list) < 10:
        store.tvr.set(TvrBit.ICC_DATA_MISSING)
        store.set(0x9F34, b"\x3f\x00\x00")
        return CvmOutcome(b"\x3f\x00\x00", None)
    if len(cvm_list) % 2:
        raise CardError("CVM list has an odd length", length=len(cvm_list))
    x, y = int.from_bytes(cvm_list[:4], "big"), int.from_bytes(cvm_list[4:8], "big")
    verifier = _Verifier(reader, store, pin_entry, pin_key)
    last: bytes | None = None
    for i in range(8, len(cvm_list), 2):
        code, cond = cvm_list[i], cvm_list[i + 1]
        cvm = code & 0x3F
        if not _condition(store, cond, cvm, amount, x, y, capabilities, terminal_type):
            continue
        last = bytes([code, cond])
        result: int | None = None
        if cvm not in RECOGNISED:
            store.tvr.set(TvrBit.UNRECOGNISED_CVM)
        elif _supported(cvm, capabilities):
            result = verifier.run(cvm)
        if result is not None:
            store.set(0x9F34, last + bytes([result]))
            return CvmOutcome(last + bytes([result]), verifier.online_block)
        if not code & 0x40:    # b7: apply succeeding CV rule if this one is unsuccessful
            break
    store.tvr.set(TvrBit.CARDHOLDER_VERIFICATION_NOT_SUCCESSFUL)
    results = (last or b"\x3f\x00") + bytes([RESULT_FAILED])
    store.set(0x9F34, results)
    return CvmOutcome(results, verifier.online_block)
