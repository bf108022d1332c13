"""EMV transaction cost on the terminal: APDU count and the kernel's own processing time.

For a DDA card (Visa-like, online PIN) and a CDA card (Mastercard-like, offline enciphered PIN), runs the
whole chain 50 times: kernel over pyscard -> pcscd -> vpcd -> virtual card, pre-authorization with the
simulated acquirer over TCP, second GENERATE AC with the ARPC. The terminal's own time is the total minus
the time spent waiting in transmit() (card) and in the host exchange. Prints medians.
Run: .venv/bin/python benchmarks/emv_transaction.py [runs]
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

from drivers.acquirer import AcquirerLink
from drivers.cardreader.pcsc import PcscReader
from firmware.acquirer import messages as iso
from firmware.emv import AidConfig, EmvConfig, IssuerResponse, PinInput, complete, run_transaction
from hostsim import emv_keys
from hostsim.acquirer_host import AcquirerHost
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile
from hostsim.pcscd import PcscDaemon
from hostsim.vpcd import VirtualCardServer

TERMINAL = iso.Terminal(terminal_id="T0000001", merchant_id="FORECOURT000001", name_location="Bench")
NOW = dt.datetime(2026, 6, 15, 12, 0, 0)


class TimedReader:
    """Counts APDUs and the time spent waiting for the card."""

    def __init__(self, reader: PcscReader) -> None:
        self.reader, self.apdus, self.waited = reader, 0, 0.0

    def transmit(self, apdu: bytes) -> bytes:
        t = time.perf_counter()
        try:
            return self.reader.transmit(apdu)
        finally:
            self.waited += time.perf_counter() - t
            self.apdus += 1


class OfflinePin:
    def plain_pin_block_for_card(self) -> bytearray:
        return bytearray.fromhex("241234FFFFFFFFFF")   # ISO 9564 format 2, PIN 1234


def one(cards: VirtualCardServer, pcsc: PcscReader, profile: dict, host: AcquirerHost) -> tuple[int, float]:
    cards.insert(EmvCard(profile))
    pcsc.wait_for_card(10)
    pcsc.connect()
    reader = TimedReader(pcsc)
    version = bytes.fromhex(profile["data"].get("9F08", "008C"))
    config = EmvConfig(aids=tuple(AidConfig(bytes.fromhex(a), app_version=version)
                                  for a in ("A0000000031010", "A0000000041010")),
                       ca_keys=emv_keys.ca_public_keys())

    def pin_entry(kind: str, tries: int | None, pan: str) -> PinInput:
        # an 8-byte format 0 block, what the default acquirer dialect carries in field 52
        return PinInput(online_block=bytes(8)) if kind == "online" else PinInput(offline=OfflinePin())

    t0 = time.perf_counter()
    result = run_transaction(reader, config, 15000, pin_entry=pin_entry, online=True, now=NOW)
    card = iso.Card(pan=result.pan, expiry=result.expiry, entry_mode="051", pan_sequence=result.pan_sequence)
    block = result.online_pin_block
    request = iso.preauth_request(terminal=TERMINAL, card=card, amount=15000, stan=1,
                                  when=NOW.replace(tzinfo=dt.UTC), icc_tlv=result.icc_data,
                                  pin_block=block, ksn=bytes(12) if block else None)
    h0 = time.perf_counter()
    with AcquirerLink("127.0.0.1", host.port, response_timeout=5) as link:
        raw = link.exchange(request)
    host_wait = time.perf_counter() - h0
    answer = iso.parse_preauth_response(raw)
    final = complete(result, IssuerResponse.from_icc_data(answer.response_code.encode(),
                                                          answer.icc_response_tlv or b""))
    total = time.perf_counter() - t0
    if not final.approved:
        raise RuntimeError("benchmark transaction was not approved")
    pcsc.disconnect()
    cards.remove()
    pcsc.wait_for_removal(10)
    return reader.apdus, total - reader.waited - host_wait


def main() -> int:
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)   # pyemv's TripleDES on the host side
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    with tempfile.TemporaryDirectory(prefix="forecourt-emv-bench-") as tmp:
        cards = VirtualCardServer().start()
        pcscd = PcscDaemon(Path(tmp), cards.port).start()
        try:
            pcsc = PcscReader(pcscd.reader_name)
            for name, label in (("visa_dda_online_pin", "DDA"), ("mc_cda_offline_pin", "CDA")):
                profile = load_profile(name)
                host = AcquirerHost({profile["card"]["pan"][:6]: bytes.fromhex(profile["keys"]["imk_ac"])},
                                    lambda block, ksn, pan: True, today=lambda: NOW.date()).start()
                try:
                    samples = [one(cards, pcsc, profile, host) for _ in range(runs)]
                finally:
                    host.stop()
                own = statistics.median(s[1] for s in samples) * 1000
                print(f"emv_transaction {label}: runs={runs} apdus={samples[0][0]} "
                      f"terminal_processing_ms median={own:.2f}")
        finally:
            pcscd.stop()
            cards.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
