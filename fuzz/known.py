"""Defects the fuzz targets found that are reported and not fixed yet, each with its minimal input.

The property tests (tests/test_fuzz_*.py) step over exactly these (exception type and file); each
example is an xfail(strict=True) test, so a fix turns it into XPASS and this entry is then removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import iso8583
from fuzz.harness import Known, Target

__all__ = ["FIXED", "KNOWN", "fixed", "reported"]

# An entry, while its fix is pending, looks like this (exception type, file, minimal input, the report):
#   "escpos": (Known("UnicodeDecodeError", "hostsim/escpos_decode.py", b"\x1bt\x10\x9c\n",
#                    "reported: ESC t 16 is taken for a multi-byte code page"),),
KNOWN: dict[str, tuple[Known, ...]] = {}


# Found here, reported and since fixed: each input stays a plain test, so the defect cannot come back.
FIXED: dict[str, tuple[bytes, ...]] = {
    "acquirer_host": (iso8583.encode({"t": "0220", "4": "000000001000"}),),   # advice without field 11
    "config_toml": (b'[terminal]\nid = "\xff"\n',),                           # not UTF-8
    "panel_line": (b'{"key": ' + b"[" * 5000,),                                # JSON nested too deep
    "pinpad_line": (b"[" * 5000,),
    "pinpad_keys": (b"12\n3\n4\n5\nENTER",                                   # several characters, one key
                    "1\n2\n3\n\u0664\nENTER".encode()),                       # a digit of another script
    "card_context": (b"[" * 5000,),                                             # JSON nested too deep
    "journal_rows": (b"\x05[", b"\x00bogus", b"\x86\xff",                     # bad JSON, state, BLOB
                     b'\x08{"0":[]}'),                                          # a totals entry cut short
    "escpos": (b"\x1bt\x10\x9c\n",),       # ESC t 16 (WPC1252) and 0x9C: what the printer sends for "œ"
    "panel_server_line": (b"[" * 5000, b'{"a": 1}'),   # JSON nested too deep; an object that is no screen
}


def fixed(targets: Sequence[Target]) -> list[Any]:
    """pytest params (target, input) of the fixed defects."""
    import pytest

    return [pytest.param(t, x, id=f"{t.name}-{i}")
            for t in targets for i, x in enumerate(FIXED.get(t.name, ()))]


def reported(targets: Sequence[Target]) -> list[Any]:
    """pytest params (target, known defect), each marked xfail(strict=True) with its report."""
    import pytest

    return [pytest.param(t, k, marks=pytest.mark.xfail(strict=True, reason=k.reason), id=f"{t.name}-{i}")
            for t in targets for i, k in enumerate(KNOWN.get(t.name, ()))]
