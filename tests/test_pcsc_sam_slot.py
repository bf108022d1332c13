"""The SAM's reader: a second vpcd slot of our pcscd, its own card server, used beside the card reader."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.errors import CardRemoved
from drivers.cardreader import PcscReader, open_reader
from hostsim.pcscd import VPCD_DRIVER, PcscDaemon
from hostsim.vpcd import VirtualCardServer
from tests.test_pcsc_reader import _pcscd_pids

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("pcscd") is None or not VPCD_DRIVER.exists(),
                       reason="needs the Debian packages pcscd and vsmartcard-vpcd"),
]

INS_COUNT = 0x20
SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"      # ISO/IEC 7816-4


@dataclass
class CounterCard:
    """Answers INS 20 with its tag, a 32-bit count of the APDUs it answered and the command data echoed."""

    tag: bytes
    atr: bytes = bytes.fromhex("3B8080010101")
    count: int = 0
    power_ons: int = 0

    def power_on(self) -> None:
        self.power_ons += 1

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def apdu(self, command: bytes) -> bytes:
        if command[1] != INS_COUNT:
            return SW_INS_NOT_SUPPORTED
        self.count += 1
        data = command[5:5 + command[4]] if len(command) > 5 else b""
        return self.tag + struct.pack(">I", self.count) + data + SW_OK


def count(data: bytes = b"") -> bytes:
    return bytes([0x80, INS_COUNT, 0, 0, len(data)]) + data + b"\x00"


def open_by_url(name: str | None) -> PcscReader:
    """The way the terminal opens a configured reader: pcsc://<percent-encoded name>."""
    assert name is not None
    reader = open_reader("pcsc://" + name.replace(" ", "%20"))
    assert isinstance(reader, PcscReader)
    return reader


@dataclass
class Slots:
    daemon: PcscDaemon
    cards: VirtualCardServer
    sams: VirtualCardServer


@pytest.fixture
def slots(tmp_path: Path) -> Iterator[Slots]:
    """Per test (pcscd starts in ~0.3 s): a module-wide daemon would hold the machine lock across tests."""
    with VirtualCardServer() as cards, VirtualCardServer() as sams, \
            PcscDaemon(tmp_path / "state", cards.port, sam_port=sams.port) as daemon:
        yield Slots(daemon, cards, sams)


@pytest.fixture
def card_reader(slots: Slots) -> Iterator[PcscReader]:
    reader = open_by_url(slots.daemon.reader_name)
    yield reader
    reader.close()


@pytest.fixture
def sam_reader(slots: Slots) -> Iterator[PcscReader]:
    reader = open_by_url(slots.daemon.sam_reader_name)
    yield reader
    reader.close()


def test_names_without_a_sam_port_are_unchanged(tmp_path: Path) -> None:
    daemon = PcscDaemon(tmp_path, 1)              # not started: construction has no side effects
    assert daemon.reader_name == "Forecourt Virtual PCD 00 00"
    assert daemon.sam_reader_name is None
    assert daemon.reader_names == ["Forecourt Virtual PCD 00 00"]


def test_two_readers_listed(slots: Slots) -> None:
    from smartcard.System import readers  # type: ignore[import-untyped]

    assert slots.daemon.reader_names == ["Forecourt Virtual PCD 00 00", "Forecourt Virtual PCD 00 01"]
    assert slots.daemon.sam_reader_name == "Forecourt Virtual PCD 00 01"
    listed = [str(r) for r in readers()]
    assert set(slots.daemon.reader_names) <= set(listed)


def test_each_slot_reaches_its_own_card(slots: Slots, card_reader: PcscReader,
                                        sam_reader: PcscReader) -> None:
    card, sam = CounterCard(b"C", atr=bytes.fromhex("3B8180018080")), CounterCard(b"S")
    slots.cards.insert(card)
    slots.sams.insert(sam)
    assert card_reader.wait_for_card(5) and sam_reader.wait_for_card(5)
    assert card_reader.connect() == card.atr
    assert sam_reader.connect() == sam.atr
    assert sam_reader.transmit(count(b"\x01\x02")) == b"S\x00\x00\x00\x01\x01\x02" + SW_OK
    assert card_reader.transmit(count()) == b"C\x00\x00\x00\x01" + SW_OK
    assert sam_reader.transmit(count()) == b"S\x00\x00\x00\x02" + SW_OK
    assert card_reader.transmit(bytes.fromhex("00B0000000")) == SW_INS_NOT_SUPPORTED
    assert (slots.cards.apdu_count, slots.sams.apdu_count) == (2, 2)


def test_card_comes_and_goes_while_the_sam_session_stays(slots: Slots, card_reader: PcscReader,
                                                          sam_reader: PcscReader) -> None:
    sam = CounterCard(b"S")
    slots.sams.insert(sam)
    assert sam_reader.wait_for_card(5)
    sam_reader.connect()                                    # once: the terminal keeps the SAM connected
    powered = sam.power_ons
    for n in range(1, 3):
        card = CounterCard(b"C")
        slots.cards.insert(card)
        assert card_reader.wait_for_card(5)
        card_reader.connect()
        assert card_reader.transmit(count()) == b"C\x00\x00\x00\x01" + SW_OK
        assert sam_reader.transmit(count()) == b"S" + struct.pack(">I", 2 * n - 1) + SW_OK
        slots.cards.remove()
        assert card_reader.wait_for_removal(5)
        with pytest.raises(CardRemoved):
            card_reader.transmit(count())
        assert sam_reader.transmit(count()) == b"S" + struct.pack(">I", 2 * n) + SW_OK
        assert sam_reader.card_present()
    assert sam.power_ons == powered                          # never powered again, never reset


def test_sam_removal_leaves_the_card_session_alone(slots: Slots, card_reader: PcscReader,
                                                   sam_reader: PcscReader) -> None:
    slots.cards.insert(CounterCard(b"C"))
    slots.sams.insert(CounterCard(b"S"))
    assert card_reader.wait_for_card(5) and sam_reader.wait_for_card(5)
    card_reader.connect()
    sam_reader.connect()
    slots.sams.remove()
    assert sam_reader.wait_for_removal(5)
    assert card_reader.transmit(count()) == b"C\x00\x00\x00\x01" + SW_OK
    slots.sams.insert(CounterCard(b"T"))
    assert sam_reader.wait_for_card(5)
    sam_reader.connect()
    assert sam_reader.transmit(count()) == b"T\x00\x00\x00\x01" + SW_OK
    assert card_reader.transmit(count()) == b"C\x00\x00\x00\x02" + SW_OK


def test_stop_restores_a_running_pcscd(tmp_path: Path) -> None:
    """With the SAM slot too: the machine's pcscd is stopped for the run and back afterwards."""
    if _pcscd_pids():
        pytest.skip("a pcscd already runs here; not replacing it with a test one")
    empty_conf = tmp_path / "stray.conf.d"
    empty_conf.mkdir()
    subprocess.run(["pcscd", "-c", str(empty_conf)], check=True, timeout=10)   # daemonizes itself
    try:
        stray = _wait_for_pids(present=True)
        assert stray
        with VirtualCardServer() as cards, VirtualCardServer() as sams, \
                PcscDaemon(tmp_path / "state", cards.port, sam_port=sams.port) as daemon:
            assert not set(stray) & set(_pcscd_pids())
            sams.insert(CounterCard(b"S"))
            sam_reader = open_by_url(daemon.sam_reader_name)
            assert sam_reader.wait_for_card(5)
            sam_reader.close()
        restored = _wait_for_pids(present=True)
        assert restored
        cmdline = Path(f"/proc/{restored[0]}/cmdline").read_bytes().split(b"\0")
        assert str(empty_conf).encode() in cmdline
    finally:
        for pid in _pcscd_pids():
            subprocess.run(["kill", str(pid)], check=False)
        _wait_for_pids(present=False)


def _wait_for_pids(present: bool, timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    pids = _pcscd_pids()
    while bool(pids) != present and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _pcscd_pids()
    return pids
