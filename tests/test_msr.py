"""The magnetic stripe reader head (drivers/msr) against hostsim.swipe_server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from contracts.errors import CardError, ConfigError
from drivers.msr import open_msr
from drivers.msr.reader import MemoryMagstripeReader, TcpMagstripeReader
from hostsim.swipe_server import SwipeServer

BROKEN_CHIP = "4761739001010143=31062010000000000000"
STRIPE_ONLY = "4761739001010135=31061010000000000000"
WAIT = 5.0


def until(condition: object, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[SwipeServer]:
    srv = SwipeServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def reader(server: SwipeServer) -> Iterator[TcpMagstripeReader]:
    msr = open_msr(f"tcp://127.0.0.1:{server.port}")
    assert isinstance(msr, TcpMagstripeReader)
    msr.flush()                                   # first use connects
    server.wait_connected(WAIT)
    yield msr
    msr.close()


def test_open_by_url() -> None:
    assert open_msr("") is None
    assert open_msr("none://") is None
    assert isinstance(open_msr("memory://"), MemoryMagstripeReader)
    for bad in ("serial:///dev/ttyUSB0", "tcp://localhost", "tcp://:80", "tcp://host:port"):
        with pytest.raises(ConfigError) as err:
            open_msr(bad)
        assert err.value.context["key"] == "bank.magstripe"     # BankSection.magstripe in the config


def test_memory_reader() -> None:
    msr = MemoryMagstripeReader()
    assert msr.wait_swipe(0.01) is None
    msr.swipe(f";{BROKEN_CHIP}?")
    track = msr.wait_swipe(1)
    assert track is not None and track.raw == BROKEN_CHIP
    msr.swipe(";4761739001010143=31?")
    with pytest.raises(CardError):
        msr.wait_swipe(1)
    msr.swipe(f";{STRIPE_ONLY}?")
    track = msr.wait_swipe(1)
    assert track is not None and track.service_code == "101"


def test_memory_reader_flush_drops_earlier_swipes() -> None:
    msr = MemoryMagstripeReader()
    msr.swipe(f";{BROKEN_CHIP}?")
    msr.flush()
    assert msr.wait_swipe(0.01) is None
    msr.swipe(f";{STRIPE_ONLY}?")
    track = msr.wait_swipe(1)
    assert track is not None and track.raw == STRIPE_ONLY
    msr.close()


def test_tcp_is_lazy() -> None:
    srv = SwipeServer().start()
    try:
        msr = TcpMagstripeReader("127.0.0.1", srv.port)
        with pytest.raises(TimeoutError):
            srv.wait_connected(0.3)
        assert msr.wait_swipe(0.01) is None
        srv.wait_connected(WAIT)
        msr.close()
    finally:
        srv.stop()


def test_tcp_swipe_arrives(server: SwipeServer, reader: TcpMagstripeReader) -> None:
    server.swipe(BROKEN_CHIP)
    track = reader.wait_swipe(WAIT)
    assert track is not None and track.raw == BROKEN_CHIP
    assert reader.wait_swipe(0.05) is None


def test_tcp_garbled_swipe_then_good_one(server: SwipeServer, reader: TcpMagstripeReader) -> None:
    server.swipe("4761739001010143=31")            # half a swipe
    with pytest.raises(CardError) as info:
        reader.wait_swipe(WAIT)
    assert "4761739001010143" not in str(info.value)
    server.swipe("\xff\x00garbage")
    with pytest.raises(CardError):
        reader.wait_swipe(WAIT)
    server.swipe(STRIPE_ONLY)
    track = reader.wait_swipe(WAIT)
    assert track is not None and track.raw == STRIPE_ONLY


def test_tcp_flush_drops_earlier_swipes(server: SwipeServer, reader: TcpMagstripeReader) -> None:
    server.swipe(BROKEN_CHIP)
    until(lambda: reader._swipes.qsize() == 1)
    reader.flush()
    assert reader.wait_swipe(0.05) is None
    server.swipe(STRIPE_ONLY)
    track = reader.wait_swipe(WAIT)
    assert track is not None and track.raw == STRIPE_ONLY


def test_tcp_reconnects_after_the_connection_drops(server: SwipeServer, reader: TcpMagstripeReader) -> None:
    server.drop()
    server.wait_connected(WAIT)
    server.swipe(BROKEN_CHIP)
    track = reader.wait_swipe(WAIT)
    assert track is not None and track.raw == BROKEN_CHIP


def test_tcp_reconnects_after_the_server_restarts() -> None:
    first = SwipeServer().start()
    port = first.port
    msr = TcpMagstripeReader("127.0.0.1", port, retry_delay=0.05)
    try:
        msr.flush()
        first.wait_connected(WAIT)
        first.stop()
        until(lambda: not msr.connected)
        second = SwipeServer(port=port).start()
        try:
            second.wait_connected(WAIT)
            second.swipe(STRIPE_ONLY)
            track = msr.wait_swipe(WAIT)
            assert track is not None and track.raw == STRIPE_ONLY
        finally:
            second.stop()
    finally:
        msr.close()


def test_swipe_without_terminal_raises() -> None:
    srv = SwipeServer().start()
    try:
        with pytest.raises(ConnectionError):
            srv.swipe(STRIPE_ONLY)
        with pytest.raises(ValueError):
            srv.swipe("1\n2")
    finally:
        srv.stop()


def test_close_stops_the_thread(server: SwipeServer, reader: TcpMagstripeReader) -> None:
    reader.close()
    until(lambda: not reader.connected)
    assert reader._thread is not None
    reader._thread.join(WAIT)
    assert not reader._thread.is_alive()
