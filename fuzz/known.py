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

KNOWN: dict[str, tuple[Known, ...]] = {
    # what python-escpos sends for ReceiptLine("œ") (French): ESC t 16 (WPC1252), then 0x9C
    "escpos": (Known("UnicodeDecodeError", "hostsim/escpos_decode.py", b"\x1bt\x10\x9c\n",
                     "reported: ESC t with a single-byte code page lacking 0x81 (16 WPC1252, 21 Thai, 49 "
                     "Hebrew) raises UnicodeDecodeError in _codec's multi-byte probe; the printer sends "
                     "page 16 for œ Œ Š Ž Ÿ ý"),),
    "card_context": (Known("RecursionError", "firmware/programs/bank/advice.py", b"[" * 5000,
                           "reported: CardContext.loads of deeply nested JSON raises RecursionError "
                           "instead of SyncError (it catches ValueError and TypeError only)"),),
    "journal_rows": (Known("", "firmware/sale/journal.py", b"\x05[",
                           "reported: a sale row whose JSON column (nozzles) is corrupt raises "
                           "JSONDecodeError instead of JournalError"),
                     Known("", "firmware/sale/journal.py", b"\x00bogus",
                           "reported: a sale row with an unknown state raises ValueError instead of "
                           "JournalError"),
                     Known("", "firmware/sale/journal.py", b"\x86\xff",
                           "reported: a sale row whose JSON column is a BLOB of non-UTF-8 bytes raises "
                           "UnicodeDecodeError instead of JournalError")),
    "pinpad_keys": (Known("", "drivers/pinpad/pinpad.py", b"12\n3\n4\n5\nENTER",
                          "reported: a key source handing over several characters at once ('12') makes "
                          "PinPad._collect raise TypeError from ord() instead of ignoring the key"),
                    Known("", "drivers/pinpad/pinpad.py", "1\n2\n3\n\u0664\nENTER".encode(),
                          "reported: a non-ASCII digit key ('\u0664', str.isdigit() is true) makes "
                          "PinPad._collect raise ValueError instead of ignoring the key")),
}


# Found here, reported and since fixed: each input stays a plain test, so the defect cannot come back.
FIXED: dict[str, tuple[bytes, ...]] = {
    "acquirer_host": (iso8583.encode({"t": "0220", "4": "000000001000"}),),   # advice without field 11
    "config_toml": (b'[terminal]\nid = "\xff"\n',),                           # not UTF-8
    "panel_line": (b'{"key": ' + b"[" * 5000,),                                # JSON nested too deep
    "pinpad_line": (b"[" * 5000,),
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
