"""The bank-card chain with real components and real cryptography: the EMV kernel reads a virtual EMV card
through pyscard -> pcscd -> vpcd, the PIN pad enciphers the PIN under AES DUKPT (or hands the card a
format 2 block for offline PIN), and the simulated acquirer verifies the ARQC and the PIN over ISO 8583/TCP;
the ARPC it returns is checked by the card in the second GENERATE AC; the completion advice is acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import iso8583
import iso8583.specs
import pytest

from drivers.acquirer import AcquirerLink
from drivers.cardreader.pcsc import PcscReader
from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key
from drivers.pinpad.pinpad import PinPad
from firmware.acquirer import messages as iso
from firmware.emv import AidConfig, Cryptogram, EmvConfig, IssuerResponse, PinInput, complete, run_transaction
from hostsim import emv_keys
from hostsim.acquirer_host import AcquirerHost
from hostsim.bank_world import clear_pin
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile
from hostsim.pcscd import PcscDaemon
from hostsim.vpcd import VirtualCardServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              # pyemv (host side) builds TripleDES from cryptography's main module, deprecated there
              pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")]

# ANSI X9.24-3-2017 supplement test BDK and initial key ID
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = bytes.fromhex("1234567890123456")
TERMINAL = iso.Terminal(terminal_id="T0000001", merchant_id="FORECOURT000001", name_location="Demo Station")
NOW = dt.datetime(2026, 6, 15, 12, 0, 0)
SENT = NOW.replace(tzinfo=dt.UTC)


class Keys:
    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)

    def read_key(self, timeout: float) -> str | None:
        return self.keys.pop(0) if self.keys else None


class OfflinePin:
    def __init__(self, pad: PinPad) -> None:
        self.pad = pad

    def plain_pin_block_for_card(self) -> bytearray:
        return self.pad.read_offline_pin(5)


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VirtualCardServer, PcscReader]]:
    cards = VirtualCardServer().start()
    pcscd = PcscDaemon(Path(tmp_path_factory.mktemp("pcscd")), cards.port).start()
    try:
        yield cards, PcscReader(pcscd.reader_name)
    finally:
        pcscd.stop()
        cards.stop()


def sale(reader: tuple[VirtualCardServer, PcscReader], profile_name: str, pin: str, *,
         rules: str = "approve") -> dict[str, object]:
    cards, pcsc = reader
    profile = load_profile(profile_name)
    cards.insert(EmvCard(profile))
    assert pcsc.wait_for_card(10)
    pcsc.connect()
    pad = PinPad(Keys(*pin, "ENTER"), bytes(16), TerminalDukpt(derive_initial_key(BDK, IKID), IKID))
    sent: dict[str, bytes] = {}

    def pin_entry(kind: str, tries: int | None, pan: str) -> PinInput:
        if kind == "online":
            sent["ksn"], sent["block"] = pad.read_dukpt_pin_block(pan, 5)
            return PinInput(online_block=sent["block"])
        return PinInput(offline=OfflinePin(pad))

    def pin_ok(block: bytes, ksn_hex: str, pan: str) -> bool:   # format 0 under the 2TDEA working key
        try:
            pin = clear_pin(BDK, block, bytes.fromhex(ksn_hex), pan, iso.DIALECT.pin_block)
            return pin == profile["card"]["pin"]
        except ValueError:
            return False

    version = bytes.fromhex(profile["data"].get("9F08", "008C"))
    config = EmvConfig(aids=tuple(AidConfig(bytes.fromhex(a), app_version=version)
                                  for a in ("A0000000031010", "A0000000041010", "A0000000043060")),
                       ca_keys=emv_keys.ca_public_keys())
    result = run_transaction(pcsc, config, 15000, pin_entry=pin_entry, online=True, now=NOW)
    host = AcquirerHost({profile["card"]["pan"][:6]: bytes.fromhex(profile["keys"]["imk_ac"])}, pin_ok,
                        lambda req: rules, today=lambda: NOW.date()).start()
    try:
        with AcquirerLink("127.0.0.1", host.port, response_timeout=5) as link:
            card = iso.Card(pan=result.pan, expiry=result.expiry, entry_mode="051",
                            pan_sequence=result.pan_sequence)
            request = iso.preauth_request(terminal=TERMINAL, card=card, amount=15000, stan=1, when=SENT,
                                          icc_tlv=result.icc_data, pin_block=sent.get("block"),
                                          ksn=sent.get("ksn"), pump=1)
            answer = iso.parse_preauth_response(link.exchange(request))
            final = complete(result, IssuerResponse.from_icc_data(answer.response_code.encode(),
                                                                  answer.icc_response_tlv or b""))
            acked = None
            if final.approved:
                advice = iso.completion_advice(terminal=TERMINAL, card=card,
                                               original=iso.original_of(request, answer),
                                               authorized_amount=answer.approved_amount,
                                               dispensed_amount=3318, stan=2, when=SENT, pump=1,
                                               fuel=[iso.FuelLine("019", 20_000, 1_659, 3318)])
                acked = iso.parse_completion_response(link.exchange(advice)).acknowledged
    finally:
        host.stop()
        pcsc.disconnect()
        cards.remove()
        assert pcsc.wait_for_removal(10)
    return {"result": result, "answer": answer, "final": final, "acked": acked, "host": host}


def test_visa_dda_online_pin_approved_through_pcscd(reader: tuple[VirtualCardServer, PcscReader]) -> None:
    out = sale(reader, "visa_dda_online_pin", "1234")
    result, final, host = out["result"], out["final"], out["host"]
    assert result.oda_method == "dda" and result.cvm_results.hex().upper() == "420300"   # type: ignore[attr-defined]
    assert out["answer"].approved  # type: ignore[attr-defined]
    assert final.approved and final.cryptogram is Cryptogram.TC and final.issuer_authenticated  # type: ignore[attr-defined]
    assert out["acked"] is True
    assert [d["code"] for d in host.decisions] == ["00", "00"]  # type: ignore[attr-defined]
    assert all("52" not in r and "62" not in r for r in host.requests)  # type: ignore[attr-defined]
    assert host.settled_total == 3318  # type: ignore[attr-defined]
    # the captured frames, read by pyiso8583's own plain ISO 8583:1987 table (nothing widened): the same
    # values as our decoder finds, the 0100's field 52 an 8-byte format 0 PIN block
    wire = list(host.wire)  # type: ignore[attr-defined]
    assert [frame[:4] for frame in wire] == [b"0100", b"0220"]
    for frame in wire:
        theirs, _ = iso8583.decode(frame, iso8583.specs.default)
        assert theirs == iso.decode(frame)
    request, _ = iso8583.decode(wire[0], iso8583.specs.default)
    assert len(bytes.fromhex(request["52"])) == 8
    advice, _ = iso8583.decode(wire[1], iso8583.specs.default)
    assert advice["4"] == "000000003318" and advice["63"].startswith("019L000020000")


def test_wrong_online_pin_is_declined_by_the_host_and_the_card_gives_aac(
        reader: tuple[VirtualCardServer, PcscReader]) -> None:
    out = sale(reader, "visa_dda_online_pin", "9999")
    assert out["answer"].response_code == "55"  # type: ignore[attr-defined]
    assert not out["final"].approved and out["final"].cryptogram is Cryptogram.AAC  # type: ignore[attr-defined]


def test_mastercard_cda_offline_pin_approved_through_pcscd(
        reader: tuple[VirtualCardServer, PcscReader]) -> None:
    out = sale(reader, "mc_cda_offline_pin", "1234")
    result, final = out["result"], out["final"]
    assert result.oda_method == "cda" and result.cvm_results.hex().upper() == "440302"  # type: ignore[attr-defined]
    assert final.approved and final.cryptogram is Cryptogram.TC  # type: ignore[attr-defined]


def test_partial_approval_carries_the_lower_amount(reader: tuple[VirtualCardServer, PcscReader]) -> None:
    out = sale(reader, "visa_dda_online_pin", "1234", rules="partial:5000")
    answer = out["answer"]
    assert answer.partial and answer.approved_amount == 5000  # type: ignore[attr-defined]
    assert out["final"].approved  # type: ignore[attr-defined]
