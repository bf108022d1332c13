"""ISO 8583:1987 frames of the acquirer link: encode and decode over the spec in contracts.iso8583_spec,
every field's format checked both ways. Errors name the field, never its value (fields hold card numbers).

>>> raw = encode({"t": "0230", "11": "000042", "39": "00"})
>>> raw[:4]
b'0230'
>>> decode(raw)["11"]
'000042'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import iso8583

from contracts import iso8583_spec as s
from contracts.errors import MessageError

__all__ = ["FORMATS", "decode", "encode"]

_P = r"[ -~]"  # printable ASCII (ans)
FORMATS: dict[str, re.Pattern[str]] = {k: re.compile(v) for k, v in {
    "t": r"0100|0110|0220|0221|0230|0420|0421|0430", "p": r"[0-9A-F]{16}", "1": r"[0-9A-F]{16}",
    "2": r"\d{12,19}", "3": r"\d{6}", "4": r"\d{12}", "7": r"\d{10}", "11": r"\d{6}", "12": r"\d{6}",
    "13": r"\d{4}", "14": r"\d{4}", "18": r"\d{4}", "22": r"\d{3}", "23": r"\d{3}", "25": r"\d{2}",
    "35": r"\d{12,19}=\d{4,20}", "37": r"[0-9A-Za-z ]{12}", "38": r"[0-9A-Za-z ]{6}", "39": r"[0-9A-Z]{2}",
    "41": _P + "{8}", "42": _P + "{15}", "43": _P + "{40}", "49": r"\d{3}", "52": r"[0-9A-F]{16}",
    "53": r"(?:[0-9A-F]{2}){8,12}", "54": r"(?:\d{7}[CD]\d{12}){1,6}", "55": r"(?:[0-9A-F]{2})*",
    "60": r"\d{2}", "63": r"(?:\d{3}[LG]\d{21})*", "90": r"\d{42}", "95": r"\d{24}[CD]\d{8}[CD]\d{8}",
    "110": r"[0-9A-F]{32}",
}.items()}


def encode(doc: Mapping[str, str]) -> bytes:
    """Encode a decoded document with SPEC (pyiso8583 fills in the bitmaps)."""
    _check(doc, "encode")
    try:
        raw, _ = iso8583.encode(dict(doc), s.SPEC)
    except (iso8583.EncodeError, KeyError, TypeError, ValueError) as exc:
        raise MessageError("cannot encode ISO 8583 message", field=getattr(exc, "field", None),
                           reason=getattr(exc, "msg", type(exc).__name__)) from None
    return bytes(raw)


def decode(raw: bytes) -> dict[str, str]:
    """Decode and check the format of every field; binary fields come back as upper-case hex."""
    if not isinstance(raw, (bytes, bytearray)):
        raise MessageError("ISO 8583 message must be bytes", type=type(raw).__name__)
    try:
        doc, _ = iso8583.decode(bytes(raw), s.SPEC)
    except iso8583.DecodeError as exc:  # exc.doc_dec holds the partial decode: never chain it
        raise MessageError("cannot decode ISO 8583 message", field=exc.field, pos=exc.pos,
                           reason=exc.msg) from None
    except KeyError as exc:  # bitmap names a field SPEC does not define
        raise MessageError("ISO 8583 field not in the acquirer spec", field=str(exc.args[0])) from None
    except (ValueError, TypeError, IndexError):
        raise MessageError("cannot decode ISO 8583 message") from None
    _check(doc, "decode")
    return doc


def _check(doc: Mapping[str, str], op: str) -> None:
    for key, value in doc.items():
        pattern = FORMATS.get(key)
        if pattern is not None and (not isinstance(value, str) or not pattern.fullmatch(value)):
            raise MessageError("ISO 8583 field has the wrong format", field=key, op=op)
