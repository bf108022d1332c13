"""PcscReader end to end: VirtualCardServer -> vpcd -> our own pcscd -> pyscard."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.errors import CardReaderError, CardRemoved
from drivers.cardreader import PcscReader, open_reader
from hostsim.cards import FLEET_AID, FleetCard
from hostsim.pcscd import VPCD_DRIVER, PcscDaemon
from hostsim.vpcd import VirtualCardServer

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("pcscd") is None or not VPCD_DRIVER.exists(),
                       reason="needs the Debian packages pcscd and vsmartcard-vpcd"),
]

PAN = "7083123456789012345"
SELECT = bytes.fromhex("00A4040008") + FLEET_AID + b"\x00"
READ_SFI1_REC1 = bytes.fromhex("00B2010C00")


def _pcscd_pids() -> list[int]:
    """Live pcscd processes (a daemonized one stays a zombie where PID 1 does not reap orphans)."""
    out = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True, check=False).stdout
    live = []
    for pid in out.split():
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.append(int(pid))
        except (OSError, IndexError):
            pass
    return live


def test_stop_restores_a_running_pcscd(tmp_path: Path) -> None:
    """Runs first, before the module fixture exists: a stray pcscd is stopped, then restarted."""
    if _pcscd_pids():
        pytest.skip("a pcscd already runs here; not replacing it with a test one")
    empty_conf = tmp_path / "stray.conf.d"
    empty_conf.mkdir()
    subprocess.run(["pcscd", "-c", str(empty_conf)], check=True, timeout=10)   # daemonizes itself
    try:
        deadline = time.monotonic() + 5
        while not _pcscd_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        stray = _pcscd_pids()
        assert stray
        with VirtualCardServer() as server, PcscDaemon(tmp_path / "state", server.port) as daemon:
            assert not set(stray) & set(_pcscd_pids())
            assert daemon.reader_name == "Forecourt Virtual PCD 00 00"
        deadline = time.monotonic() + 5
        while not _pcscd_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        restored = _pcscd_pids()
        assert restored
        cmdline = Path(f"/proc/{restored[0]}/cmdline").read_bytes().split(b"\0")
        assert str(empty_conf).encode() in cmdline
    finally:
        for pid in _pcscd_pids():
            subprocess.run(["kill", str(pid)], check=False)
        deadline = time.monotonic() + 5
        while _pcscd_pids() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def card_server() -> Iterator[VirtualCardServer]:
    with VirtualCardServer() as server:
        yield server


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory, card_server: VirtualCardServer) -> Iterator[PcscDaemon]:
    with PcscDaemon(tmp_path_factory.mktemp("pcscd"), card_server.port) as daemon:
        yield daemon


@pytest.fixture
def reader(pcscd: PcscDaemon, card_server: VirtualCardServer) -> Iterator[PcscReader]:
    card_server.remove()
    r = PcscReader(pcscd.reader_name)
    assert r.wait_for_removal(5)
    yield r
    r.close()
    card_server.remove()


def test_wait_for_card_then_select_and_read(reader: PcscReader, card_server: VirtualCardServer) -> None:
    assert not reader.card_present()
    card = FleetCard(PAN, "2712", "J DRIVER")
    card_server.insert(card)
    assert reader.wait_for_card(5)
    assert reader.card_present()
    assert reader.connect() == card.atr
    fci = reader.transmit(SELECT)
    assert fci[0] == 0x6F and fci.endswith(b"\x90\x00")
    record = reader.transmit(READ_SFI1_REC1)
    assert record.startswith(b"\x70") and record.endswith(b"\x90\x00")
    assert bytes.fromhex("5A0A7083123456789012345F") in record
    reader.disconnect()


def test_removal_raises_card_removed(reader: PcscReader, card_server: VirtualCardServer) -> None:
    card_server.insert(FleetCard(PAN, "2712", "J DRIVER"))
    assert reader.wait_for_card(5)
    reader.connect()
    assert reader.transmit(SELECT).endswith(b"\x90\x00")
    card_server.remove()
    with pytest.raises(CardRemoved) as info:
        reader.transmit(SELECT)
    assert PAN not in str(info.value)
    assert reader.wait_for_removal(5)
    assert not reader.card_present()


def test_reinserted_card_needs_a_new_connect(reader: PcscReader, card_server: VirtualCardServer) -> None:
    card_server.insert(FleetCard(PAN, "2712", "J DRIVER"))
    assert reader.wait_for_card(5)
    reader.connect()
    card_server.remove()
    assert reader.wait_for_removal(5)
    card_server.insert(FleetCard(PAN, "2712", "J DRIVER"))
    assert reader.wait_for_card(5)
    with pytest.raises(CardRemoved):
        reader.transmit(SELECT)
    reader.connect()
    assert reader.transmit(SELECT).endswith(b"\x90\x00")


def test_wait_for_card_times_out(reader: PcscReader) -> None:
    started = time.monotonic()
    assert reader.wait_for_card(0.3) is False
    assert time.monotonic() - started < 2


def test_open_reader_by_url(pcscd: PcscDaemon, card_server: VirtualCardServer) -> None:
    card_server.insert(FleetCard(PAN, "2712", "J DRIVER"))
    r = open_reader("pcsc://" + pcscd.reader_name.replace(" ", "%20"))
    assert r.wait_for_card(5)
    assert r.connect() == card_server.card.atr  # type: ignore[union-attr]
    r.disconnect()


def test_unknown_reader_is_a_reader_error(pcscd: PcscDaemon) -> None:
    with pytest.raises(CardReaderError):
        PcscReader("No Such Reader 00 00").card_present()
