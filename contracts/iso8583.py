"""ISO 8583 frames of the acquirer link: encode and decode over an acquirer dialect (contracts.iso8583_spec
holds the dialects as data), every field's format checked both ways. Errors name the field, never its value
(fields hold card numbers).

A dialect lists the fields its acquirer uses, their formats and the fields each message must carry. Every
other field of the ISO 8583:1987 directory can still be skipped by its length: `decode(strict=False)` (the
terminal reading a response) drops such fields, as acquirer specs ask of a terminal; `decode(strict=True)`
(the host reading a request) refuses them.

>>> raw = encode({"t": "0230", "11": "000042", "39": "00"})
>>> raw[:4]
b'0230'
>>> decode(raw)["11"]
'000042'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import iso8583

from contracts.errors import MessageError
from contracts.iso8583_dialect import Dialect
from contracts.iso8583_spec import DIALECT

__all__ = ["DIALECT", "Dialect", "decode", "encode", "missing_fields", "network_response"]


_FRAME = ("t", "p", "1", "h")


def _default() -> Dialect:
    return DIALECT


def encode(doc: Mapping[str, str], dialect: Dialect | None = None) -> bytes:
    """Encode a decoded document (pyiso8583 fills in the bitmaps); only the dialect's fields are allowed."""
    d = dialect or _default()
    for key in doc:
        if key not in d.spec:
            raise MessageError("ISO 8583 field not in the acquirer spec", field=key, op="encode")
    _check(doc, d, "encode")
    try:
        raw, _ = iso8583.encode(dict(doc), d.full_spec())
    except (iso8583.EncodeError, KeyError, TypeError, ValueError) as exc:
        raise MessageError("cannot encode ISO 8583 message", field=getattr(exc, "field", None),
                           reason=getattr(exc, "msg", type(exc).__name__)) from None
    return bytes(raw)


def decode(raw: bytes, dialect: Dialect | None = None, *, strict: bool = True,
           reads: Collection[str] | None = None) -> dict[str, str]:
    """Decode and check the format of every field the dialect uses; binary fields come back as upper-case
    hex. strict: a field the dialect does not use is an error; otherwise it is dropped, and so is any field
    not in reads (the fields the reader acts on) when given."""
    d = dialect or _default()
    if not isinstance(raw, (bytes, bytearray)):
        raise MessageError("ISO 8583 message must be bytes", type=type(raw).__name__)
    try:
        doc, _ = iso8583.decode(bytes(raw), d.full_spec())
    except iso8583.DecodeError as exc:  # exc.doc_dec holds the partial decode: never chain it
        raise MessageError("cannot decode ISO 8583 message", field=exc.field, pos=exc.pos,
                           reason=exc.msg) from None
    except KeyError as exc:  # bitmap names a field outside the directory
        raise MessageError("ISO 8583 field not in the acquirer spec", field=str(exc.args[0])) from None
    except (ValueError, TypeError, IndexError):
        raise MessageError("cannot decode ISO 8583 message") from None
    unknown = [k for k in doc if k not in d.spec]
    if unknown and strict:
        raise MessageError("ISO 8583 field not in the acquirer spec", field=unknown[0], op="decode")
    doc = {k: v for k, v in doc.items() if k in d.spec and (reads is None or k in reads or k in _FRAME)}
    _check(doc, d, "decode")
    return doc


def missing_fields(doc: Mapping[str, str], dialect: Dialect | None = None) -> list[str]:
    """The mandatory fields of the message's MTI that it lacks ("2|35": either one)."""
    d = dialect or _default()
    need = d.mandatory.get(doc.get("t", ""), ())
    return [key for key in need if not any(k in doc for k in key.split("|"))]


def network_response(raw: bytes, dialect: Dialect | None = None) -> bytes | None:
    """The 0810 answer to an acquirer's 0800 network management request (echo test, sign-on...), or None
    when raw is not one. The terminal keeps no network state, so it answers every 0800 it can read with 00."""
    d = dialect or _default()
    code = d.role("network_code")
    doc = decode(raw, d, strict=False, reads=("7", "11", code))
    if doc["t"] != "0800":
        return None
    if missing_fields(doc, d):
        raise MessageError("network management request lacks a mandatory field",
                           field=missing_fields(doc, d)[0])
    return encode({"t": "0810", "7": doc["7"], "11": doc["11"], "39": "00", code: doc[code]}, d)


def _check(doc: Mapping[str, str], d: Dialect, op: str) -> None:
    for key, value in doc.items():
        if key in ("p", "1", "h"):
            continue
        pattern = d.pattern(key)
        if pattern is None or not isinstance(value, str) or not pattern.fullmatch(value):
            raise MessageError("ISO 8583 field has the wrong format", field=key, op=op)
