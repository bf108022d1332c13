"""One parser for device URLs: `scheme://host:port/path?key=value`, a bare device path, or an empty string.

Host names keep their case and are percent-decoded, so a PC/SC reader name such as `pcsc://Forecourt
Virtual PCD 00 00` survives; brackets inside a name are kept (urllib.parse.urlsplit would reject them as
a malformed IPv6 literal), and # is no fragment marker. A malformed URL raises ConfigError naming the
configuration key.

>>> parse_url("tcp://127.0.0.1:9100").address()
('127.0.0.1', 9100)
>>> u = parse_url("pcsc://Forecourt%20Virtual%20PCD%2000%2000")
>>> (u.scheme, u.host, u.port)
('pcsc', 'Forecourt Virtual PCD 00 00', None)
>>> u = parse_url("/dev/ttyUSB0")
>>> (u.scheme, u.path)
('', '/dev/ttyUSB0')
>>> parse_url("sim://?flow=500").query
{'flow': '500'}
>>> parse_url("pcsc://ACME Reader [Contact] (0042) 00 00").host
'ACME Reader [Contact] (0042) 00 00'
>>> parse_url("tcp://[::1]:80").address()
('::1', 80)
>>> parse_url("tcp://printer:port", key="devices.printer")
Traceback (most recent call last):
...
contracts.errors.ConfigError: port must be a number 0..65535 (key=devices.printer port=port)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from contracts.errors import ConfigError

__all__ = ["DeviceUrl", "parse_url"]

# RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), followed by "://" here.
# Windows drive letters (C:\...) and bare paths have no "://", so they parse as a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL; `raw` is the text as configured (pyserial gets it unchanged)."""

    raw: str
    scheme: str = ""             # lower case; "" for a bare path such as /dev/ttyAMA0
    host: str = ""               # percent-decoded, case kept
    port: int | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    key: str = "url"             # configuration key, named in errors

    def address(self) -> tuple[str, int]:
        """(host, port) of a network device; ConfigError when either is missing."""
        if not self.host or self.port is None:
            raise ConfigError(f"{self.scheme}:// URL needs host:port", key=self.key)
        return self.host, self.port

    def option(self, name: str, default: str) -> str:
        return self.query.get(name, default)

    def number(self, name: str, default: float) -> float:
        """A numeric query option (`?flow=500`); ConfigError naming it when it is not a number."""
        text = self.query.get(name)
        if text is None:
            return default
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"URL option {name} must be a number", key=self.key, option=name) from None


def _split_host_port(netloc: str, key: str) -> tuple[str, int | None]:
    if netloc.startswith("["):                       # RFC 3986 IP-literal: [v6 address]:port
        end = netloc.find("]")
        if end < 0:
            raise ConfigError("unclosed [ in URL host", key=key)
        host, rest = netloc[1:end], netloc[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError("unexpected text after ] in URL host", key=key)
        port_text = rest[1:] if rest else None
    else:
        host, colon, after = netloc.rpartition(":")
        host, port_text = (host, after) if colon else (netloc, None)
    if port_text is None:
        return unquote(host), None
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ConfigError("port must be a number 0..65535", key=key, port=port_text)
    return unquote(host), int(port_text)


def parse_url(url: str, *, key: str = "url") -> DeviceUrl:
    """Split a device URL; `key` is the configuration key named in a ConfigError."""
    if not isinstance(url, str):
        raise ConfigError("device URL must be a string", key=key)
    if any(c in url for c in "\r\n\t\x00"):
        raise ConfigError("device URL holds a control character", key=key)
    match = _SCHEME.match(url)
    if match is None:
        if "://" in url:
            raise ConfigError("device URL has a malformed scheme", key=key)
        return DeviceUrl(raw=url, path=url, key=key)
    rest, _, query_text = url[match.end():].partition("?")
    slash = rest.find("/")
    netloc, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    host, port = _split_host_port(netloc, key)
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_text, keep_blank_values=True):
        if name in query:
            raise ConfigError(f"URL option {name} given twice", key=key, option=name)
        query[name] = value
    return DeviceUrl(raw=url, scheme=match.group(1).lower(), host=host, port=port, path=unquote(path),
                     query=query, key=key)
