"""drivers.url: one parser for every device URL; its docstring examples run here too."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import drivers.url
from contracts.errors import ConfigError
from drivers.url import DeviceUrl, parse_url


def test_docstring_examples() -> None:
    assert doctest.testmod(drivers.url).failed == 0


@pytest.mark.parametrize(("url", "scheme", "host", "port", "path"), [
    ("/dev/ttyAMA0", "", "", None, "/dev/ttyAMA0"),
    ("/dev/pts/3", "", "", None, "/dev/pts/3"),
    ("COM3", "", "", None, "COM3"),
    ("loop://", "loop", "", None, ""),
    ("socket://127.0.0.1:7000", "socket", "127.0.0.1", 7000, ""),
    ("spy:///dev/ttyUSB0", "spy", "", None, "/dev/ttyUSB0"),
    ("file:///dev/usb/lp0", "file", "", None, "/dev/usb/lp0"),
    ("TCP://Printer.local:9100", "tcp", "Printer.local", 9100, ""),
    ("pcsc://Forecourt Virtual PCD 00 00", "pcsc", "Forecourt Virtual PCD 00 00", None, ""),
    ("pcsc://Reader%3A1", "pcsc", "Reader:1", None, ""),
    ("none://", "none", "", None, ""),
    ("", "", "", None, ""),
])
def test_parts(url: str, scheme: str, host: str, port: int | None, path: str) -> None:
    u = parse_url(url)
    assert (u.scheme, u.host, u.port, u.path, u.raw) == (scheme, host, port, path, url)


def test_query_options() -> None:
    u = parse_url("sim://?flow=500&name=a%20b&blank", key="devices.pump_line")
    assert u.query == {"flow": "500", "name": "a b", "blank": ""}
    assert u.number("flow", 50.0) == 500.0 and u.number("other", 50.0) == 50.0
    assert u.option("name", "") == "a b"
    with pytest.raises(ConfigError) as err:
        parse_url("sim://?flow=fast", key="devices.pump_line").number("flow", 50.0)
    assert err.value.context == {"key": "devices.pump_line", "option": "flow"}


@pytest.mark.parametrize("url", [
    "tcp://host:port", "tcp://host:", "tcp://host:99999", "tcp://[::1", "tcp://[::1]x", "tcp://h:٣",
    "sim://?a=1&a=2", "1tcp://host:1", "tcp://a\n:1",
])
def test_malformed_urls_name_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_url(url, key="devices.printer")
    assert err.value.context["key"] == "devices.printer"


@pytest.mark.parametrize("url", ["tcp://localhost", "tcp://:80", "memory://"])
def test_address_needs_host_and_port(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_url(url, key="bank.acquirer").address()
    assert err.value.context["key"] == "bank.acquirer"


_hosts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=30)


@given(host=_hosts, port=st.integers(0, 65535), scheme=st.sampled_from(["tcp", "socket", "rfc2217"]))
def test_host_port_roundtrip(host: str, port: int, scheme: str) -> None:
    assert parse_url(f"{scheme}://{host}:{port}").address() == (host, port)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        u = parse_url(text)
    except ConfigError as exc:
        assert exc.context["key"] == "url"
    else:
        assert isinstance(u, DeviceUrl) and u.raw == text
