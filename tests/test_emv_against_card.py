"""End to end: firmware.emv run_transaction + complete against each virtual card profile
(hostsim.cards.emv) through MemoryReader, with the simulator's test CA keys and host cryptography."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from contracts.errors import CardNotAccepted
from drivers.cardreader import MemoryReader
from firmware.emv import (
    AidConfig,
    Cryptogram,
    EmvConfig,
    EmvResult,
    IssuerResponse,
    PinInput,
    TsiBit,
    TvrBit,
    complete,
    run_transaction,
)
from firmware.emv.data import Tsi, Tvr
from firmware.tlv import parse
from hostsim import emv_host_crypto, emv_keys
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile

# pyemv (host side) builds TripleDES from cryptography's main module, deprecated there.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

NOW = dt.datetime(2025, 6, 15, 12, 0, 0)


class OfflinePin:
    """What the PIN pad would hand over: an ISO 9564 format 2 block, here from test digits."""

    def __init__(self, digits: str) -> None:
        self.digits = digits
        self.blocks: list[bytearray] = []

    def plain_pin_block_for_card(self) -> bytearray:
        block = bytearray.fromhex(f"2{len(self.digits):X}{self.digits}".ljust(16, "F"))
        self.blocks.append(block)
        return block


def bits(raw: bytes, cls: type[Tvr | Tsi]) -> Any:
    out = cls()
    out._value[:] = raw
    return out


def config(app_version: str) -> EmvConfig:
    aids = tuple(AidConfig(bytes.fromhex(a), app_version=bytes.fromhex(app_version))
                 for a in ("A0000000031010", "A0000000041010", "A0000000043060"))
    return EmvConfig(aids=aids, ca_keys=emv_keys.ca_public_keys())


def run(profile: str, pin: OfflinePin | None = None, choose: Any = None,
        ) -> tuple[EmvResult, dict[str, Any], list[str]]:
    prof = load_profile(profile)
    reader = MemoryReader(EmvCard(prof))
    reader.connect()
    asked: list[str] = []

    def pin_entry(kind: str, tries: int | None, pan: str) -> PinInput:
        asked.append(kind)
        if kind == "online":
            return PinInput(online_block=b"\x5a" * 16)
        return PinInput(offline=pin or OfflinePin("1234"))
    version = prof["data"].get("9F08", "008C")
    return (run_transaction(reader, config(version), 5000, pin_entry=pin_entry, online=True, now=NOW,
                            choose=choose),
            prof, asked)


def approve(result: EmvResult, prof: dict[str, Any], code: str = "00") -> IssuerResponse:
    icc = dict(parse(result.icc_data))
    imk = bytes.fromhex(prof["keys"]["imk_ac"])
    assert emv_host_crypto.verify_arqc(imk, result.pan, result.pan_sequence or "00", icc).ok
    return IssuerResponse(code.encode(), emv_host_crypto.issuer_authentication_data(
        imk, result.pan, result.pan_sequence or "00", icc, code))


@pytest.mark.parametrize(("profile", "method", "cvm", "asked"), [
    ("visa_dda_online_pin", "dda", "420300", ["online"]),
    ("mc_cda_offline_pin", "cda", "440302", ["offline"]),
    ("expired", "sda", "1F0302", []),
])
def test_online_approval_gives_tc(profile: str, method: str, cvm: str, asked: list[str]) -> None:
    result, prof, pin_asked = run(profile)
    tvr, tsi = bits(result.tvr, Tvr), bits(result.tsi, Tsi)
    assert result.oda_method == method and TsiBit.ODA_PERFORMED in tsi
    for failed in (TvrBit.ODA_NOT_PERFORMED, TvrBit.SDA_FAILED, TvrBit.DDA_FAILED, TvrBit.CDA_FAILED,
                   TvrBit.ICC_DATA_MISSING, TvrBit.DIFFERENT_APPLICATION_VERSIONS):
        assert failed not in tvr, failed
    assert result.cvm_results.hex().upper() == cvm and pin_asked == asked
    assert result.requested is Cryptogram.ARQC and result.cryptogram is Cryptogram.ARQC
    assert (TvrBit.EXPIRED_APPLICATION in tvr) is (profile == "expired")
    final = complete(result, approve(result, prof))
    assert final.approved and final.cryptogram is Cryptogram.TC
    assert TvrBit.ISSUER_AUTHENTICATION_FAILED not in bits(final.tvr, Tvr)
    assert dict(parse(final.icc_data))[0x9F27][0] & 0xC0 == 0x40


def test_cda_card_declined_by_host_gives_aac() -> None:
    result, prof, _ = run("mc_cda_offline_pin")
    final = complete(result, approve(result, prof, "05"))
    assert not final.approved and final.cryptogram is Cryptogram.AAC


def test_wrong_offline_pin_counts_down_then_right_pin() -> None:
    class TwoTries(OfflinePin):
        def plain_pin_block_for_card(self) -> bytearray:
            self.digits = "9999" if not self.blocks else "1234"
            return super().plain_pin_block_for_card()
    pin = TwoTries("9999")
    result, _, asked = run("mc_cda_offline_pin", pin)
    assert asked == ["offline", "offline"] and result.cvm_results.hex().upper() == "440302"
    assert all(not any(b) for b in pin.blocks)            # the kernel wiped every plaintext block


def test_blocked_pin_card() -> None:
    result, _, _ = run("pin_blocked")
    tvr = bits(result.tvr, Tvr)
    assert TvrBit.PIN_TRY_LIMIT_EXCEEDED in tvr and result.cryptogram is Cryptogram.AAC
    assert result.decision == "declined" and complete(result, IssuerResponse(b"00")).approved is False


def forged(result: EmvResult, prof: dict[str, Any]) -> IssuerResponse:
    """A hostile host: the right format and an approving ARC, but an ARPC it could not compute."""
    genuine = approve(result, prof)
    assert genuine.auth_data is not None
    return IssuerResponse(b"00", bytes(b ^ 0x5A for b in genuine.auth_data[:8]) + genuine.auth_data[8:])


@pytest.mark.parametrize("profile", ["visa_dda_online_pin", "visa_confirm_fr", "mc_cda_offline_pin",
                                     "expired"])
def test_forged_arpc_ends_in_aac(profile: str) -> None:
    """Book 3 10.9 / Book 2 8.2: the card checks the ARPC, by EXTERNAL AUTHENTICATE or by 91 in CDOL2.
    (pin_blocked never goes online: its first GENERATE AC is an AAC.)"""
    result, prof, _ = run(profile, choose=lambda candidates: candidates.candidates[0])
    final = complete(result, forged(result, prof))
    assert not final.approved and final.cryptogram is Cryptogram.AAC
    assert dict(parse(final.icc_data))[0x9F27][0] & 0xC0 == 0x00


def test_cdol2_asks_for_issuer_authentication_data() -> None:
    """An M/Chip card (AIP 3900: no EXTERNAL AUTHENTICATE) gets the host's 91 in the second GENERATE AC."""
    prof = load_profile("mc_cda_offline_pin")
    card = EmvCard(prof)
    sent: list[bytes] = []

    class Spy(MemoryReader):
        def transmit(self, apdu: bytes) -> bytes:
            sent.append(bytes(apdu))
            return super().transmit(apdu)
    reader = Spy(card)
    reader.connect()
    result = run_transaction(reader, config("0002"), 5000, online=True, now=NOW,
                             pin_entry=lambda kind, tries, pan: PinInput(offline=OfflinePin("1234")))
    response = approve(result, prof)
    assert complete(result, response).approved
    second = [a for a in sent if a[1] == 0xAE][-1]
    assert response.auth_data is not None and second[5:5 + 10] == response.auth_data


@pytest.mark.parametrize("profile", ["visa_dda_online_pin", "mc_cda_offline_pin"])   # T=0 and T=1
def test_blocked_application_is_no_candidate(profile: str) -> None:
    card = EmvCard(load_profile(profile))
    card.application_blocked = True
    sent: list[bytes] = []

    class Spy(MemoryReader):
        def transmit(self, apdu: bytes) -> bytes:
            sent.append(bytes(apdu))
            return super().transmit(apdu)
    reader = Spy(card)
    reader.connect()
    with pytest.raises(CardNotAccepted):
        run_transaction(reader, config("0002"), 5000, online=True, now=NOW,
                        pin_entry=lambda kind, tries, pan: PinInput(offline=OfflinePin("1234")))
    assert (bytes.fromhex("00C0000000") in sent) is (card.protocol == 0)
