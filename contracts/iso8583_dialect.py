"""The shape of an acquirer dialect of ISO 8583 (the data itself lives in contracts.iso8583_spec)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import iso8583.specs

__all__ = ["PIN_BLOCK_FORMATS", "PIN_ISO0_TDEA2", "PIN_ISO4_AES", "Dialect"]

# The PIN blocks an acquirer may take, each under a working key of the PIN pad's AES DUKPT initial key
# (ANSI X9.24-3-2017 6.3.3 derives 2TDEA and AES working keys alike):
PIN_ISO0_TDEA2 = "iso0-tdea2"   # ISO 9564-1 format 0, 8 bytes, 2TDEA: the 1987 b64 field 52
PIN_ISO4_AES = "iso4-aes"       # ISO 9564-1 format 4, 16 bytes, AES: wider than any 1987 field
PIN_BLOCK_FORMATS = (PIN_ISO0_TDEA2, PIN_ISO4_AES)


@dataclass(frozen=True)
class Dialect:
    """One acquirer's ISO 8583 interface, as data: a second acquirer is a second Dialect, not new code."""

    name: str
    source: str                                  # the published specification it follows
    spec: Mapping[str, Mapping[str, Any]]        # pyiso8583 layout of the fields this acquirer uses
    formats: Mapping[str, str]                   # field -> regular expression its value must match
    mandatory: Mapping[str, tuple[str, ...]]     # MTI -> fields it must carry ("2|35": one of them)
    roles: Mapping[str, str] = field(default_factory=dict)     # role (ksn, fuel, ...) -> field number
    values: Mapping[str, str] = field(default_factory=dict)    # named code values of this acquirer
    pin_block: str = PIN_ISO0_TDEA2                            # the PIN block format its PIN field carries
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False, compare=False)

    def pattern(self, key: str) -> re.Pattern[str] | None:
        if key not in self.formats:
            return None
        if key not in self._compiled:
            self._compiled[key] = re.compile(self.formats[key])
        return self._compiled[key]

    def role(self, name: str) -> str:
        """The field number this acquirer uses for a role (ksn, fuel, pin_block, ...)."""
        return self.roles[name]

    def full_spec(self) -> dict[str, Any]:
        """The 1987 directory (to skip a field by its length) with this dialect's fields over it."""
        return {**_ISO1987, **self.spec}


# Every field's length format from the ISO 8583:1987 directory as pyiso8583 ships it, used only to step over
# fields a dialect does not use; a dialect's own fields are written out in its data file.
_ISO1987: dict[str, Any] = dict(iso8583.specs.default)
