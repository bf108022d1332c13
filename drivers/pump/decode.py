"""Decode a Wayne DART bench capture (hex) into one JSON-able dict per frame, for technicians.

`forecourt pump decode 50 20 FA 50 36 01 01 02 ...` prints each frame on one JSON line: address, control
kind, TX#, direction, transactions by name with their fields, crc_ok. Frames come from dart.FrameSplitter,
so several frames and line noise in one capture are fine. A frame with a bad CRC is still shown
(crc_ok false, transactions as raw hex). DART transaction codes overlap between directions (0x01 is CD1
to the pump and DC1 from it), so a data frame's direction comes from --from, else from the capture (the
answer to a POLL is from the pump), else from its own structure where that decides it (a DC101 is 16
bytes, a CD101 1; a DC2 8 BCD bytes, a CD2 nozzles 1..15). Where nothing decides it (CD1 and DC1, CD3 and
DC3 read alike) the frame says so: direction null, direction_basis "undecided", and both readings.
Figures are raw wire numbers: their decimal places are the pump's (DC7), not in the frame.

Exit codes: 0 frames decoded (undecodable ones are shown with an "error" field); 2 bad input (odd or
non-hex digits, no complete frame), with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from contracts.errors import MessageError

from . import dart, layouts

__all__ = ["EXIT_OK", "EXIT_USAGE", "DecodeInputError", "add_pump_parser", "decode_hex", "main"]

EXIT_OK, EXIT_USAGE = 0, 2
PROG = "forecourt pump decode"
TO_PUMP, FROM_PUMP = "to_pump", "from_pump"
_SEPARATORS = " \t\r\n,:"

KIND_NAMES = {dart.DATA: "DATA", dart.POLL: "POLL", dart.EOT: "EOT", dart.NAK: "NAK", dart.ACK: "ACK",
              dart.ACKPOLL: "ACKPOLL"}
COMMAND_NAMES = {dart.CMD_STATUS: "STATUS", dart.CMD_IDENTITY: "IDENTITY",
                 dart.CMD_FILLING_INFO: "FILLING_INFO", dart.CMD_RESET: "RESET",
                 dart.CMD_AUTHORIZE: "AUTHORIZE", dart.CMD_STOP: "STOP", dart.CMD_SWITCH_OFF: "SWITCH_OFF",
                 dart.CMD_SUSPEND: "SUSPEND", dart.CMD_RESUME: "RESUME",
                 dart.CMD_RETURN_PRICES: "RETURN_PRICES", dart.CMD_PARAMETERS: "RETURN_PARAMETERS"}
STATUS_NAMES = {dart.ST_NOT_PROGRAMMED: "NOT_PROGRAMMED", dart.ST_RESET: "RESET",
                dart.ST_AUTHORIZED: "AUTHORIZED", dart.ST_FILLING: "FILLING",
                dart.ST_FILLING_COMPLETED: "FILLING_COMPLETED", dart.ST_MAX_REACHED: "MAX_REACHED",
                dart.ST_SWITCHED_OFF: "SWITCHED_OFF", dart.ST_SUSPENDED: "SUSPENDED"}


class DecodeInputError(MessageError):
    """The capture is not usable: not hex, an odd number of digits, or no complete frame in it."""


# -- transaction fields (Wayne DART application protocol spec) -------------------------------------------
def _length(data: bytes, *ok: int) -> None:
    if len(data) not in ok:
        raise dart.FrameError("length {} where {} expected".format(len(data), "/".join(map(str, ok))))


def _cd1(data: bytes) -> dict[str, Any]:
    _length(data, 1)
    if data[0] not in COMMAND_NAMES:
        raise dart.FrameError(f"unknown command 0x{data[0]:02X}")
    return {"command": COMMAND_NAMES[data[0]], "command_code": data[0]}


def _cd2(data: bytes) -> dict[str, Any]:
    if not data or any(n < 1 or n > 15 for n in data):
        raise dart.FrameError("nozzle numbers must be 1..15")
    return {"nozzles": list(data)}


def _cd3(data: bytes) -> dict[str, Any]:
    _length(data, 4)
    return {"preset_volume": dart.bcd_decode(data)}


def _cd4(data: bytes) -> dict[str, Any]:
    _length(data, 4)
    return {"preset_amount": dart.bcd_decode(data)}


def _cd5(data: bytes) -> dict[str, Any]:
    if not data or len(data) % 3:
        raise dart.FrameError("prices need 3 bytes per nozzle")
    return {"prices": [{"nozzle": i // 3 + 1, "price": dart.bcd_decode(data[i:i + 3])}
                       for i in range(0, len(data), 3)]}


def _counter(coun: int) -> dict[str, Any]:
    kind = "volume" if layouts.coun_is_volume(coun) else "amount"
    nozzle = coun & 0x0F
    return {"counter": coun, "total": kind, "nozzle": None if nozzle == 9 else nozzle}


def _cd101(data: bytes) -> dict[str, Any]:
    _length(data, 1)
    return _counter(data[0])


def _dc1(data: bytes) -> dict[str, Any]:
    _length(data, 1)
    if data[0] not in STATUS_NAMES:
        raise dart.FrameError(f"unknown status 0x{data[0]:02X}")
    return {"status": STATUS_NAMES[data[0]], "status_code": data[0]}


def _dc2(data: bytes) -> dict[str, Any]:
    _length(data, 8)
    return {"volume": dart.bcd_decode(data[:4]), "amount": dart.bcd_decode(data[4:])}


def _dc3(data: bytes) -> dict[str, Any]:
    _length(data, 4)
    if data[3] & 0xE0:
        raise dart.FrameError("nozzle byte uses bits 5..7")
    return {"price": dart.bcd_decode(data[:3]), "nozzle": data[3] & 0x0F,
            "nozzle_out": bool(data[3] & dart.NOZZLE_OUT)}


def _dc5(data: bytes) -> dict[str, Any]:
    _length(data, 1)
    return {"alarm_code": data[0]}


def _dc9(data: bytes) -> dict[str, Any]:
    _length(data, 5)
    return {"identity": dart.bcd_decode(data)}


def _dc7(data: bytes) -> dict[str, Any]:
    vol, amo, unp = layouts.dc7_decimals(data)
    return {"volume_decimals": vol, "amount_decimals": amo, "price_decimals": unp}


def _dc101(data: bytes) -> dict[str, Any]:
    coun, total = layouts.dc101_total(data)
    return {**_counter(coun), "value": total, "meter1": dart.bcd_decode(data[6:11]),
            "meter2": dart.bcd_decode(data[11:16])}


_Field = Callable[[bytes], dict[str, Any]]
FIELDS: dict[str, dict[int, tuple[str, _Field]]] = {
    TO_PUMP: {dart.CD1: ("CD1", _cd1), dart.CD2: ("CD2", _cd2), dart.CD3: ("CD3", _cd3),
              dart.CD4: ("CD4", _cd4), dart.CD5: ("CD5", _cd5), dart.CD101: ("CD101", _cd101)},
    FROM_PUMP: {dart.DC1: ("DC1", _dc1), dart.DC2: ("DC2", _dc2), dart.DC3: ("DC3", _dc3),
                dart.DC5: ("DC5", _dc5), dart.DC7: ("DC7", _dc7), dart.DC9: ("DC9", _dc9),
                dart.DC101: ("DC101", _dc101)},
}


def _transaction(direction: str, trans: int, data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"trans": f"0x{trans:02X}", "data": data.hex()}
    known = FIELDS[direction].get(trans)
    if known is None:
        out["name"] = "UNKNOWN"
        return out
    out["name"] = known[0]
    try:
        out.update(known[1](data))
    except dart.DartError as exc:
        out["error"] = str(exc)
    return out


def _fits(direction: str, trans: int, data: bytes) -> bool:
    """Whether the transaction reads in that direction; one unknown both ways constrains nothing."""
    got = _transaction(direction, trans, data)
    other = _transaction(TO_PUMP if direction == FROM_PUMP else FROM_PUMP, trans, data)
    if got["name"] == "UNKNOWN" and other["name"] == "UNKNOWN":
        return True
    return got["name"] != "UNKNOWN" and "error" not in got


def _structure(transactions: list[tuple[int, bytes]]) -> str | None:
    """The one direction every transaction of the frame reads in, or None when both (or neither) do."""
    ways = [d for d in (TO_PUMP, FROM_PUMP) if all(_fits(d, c, x) for c, x in transactions)]
    return ways[0] if len(ways) == 1 else None


# -- frames ----------------------------------------------------------------------------------------------
def parse_hex(text: str) -> bytes:
    """Hex digits with optional whitespace, ':' or ',' between them (and optional 0x prefixes) -> bytes."""
    digits = []
    for pos, ch in enumerate(text.replace("0x", "  ").replace("0X", "  ")):
        if ch in _SEPARATORS:
            continue
        if ch not in "0123456789abcdefABCDEF":
            raise DecodeInputError(f"not a hex digit: {ch!r} at position {pos}")
        digits.append(ch)
    if not digits:
        raise DecodeInputError("no hex digits given")
    if len(digits) % 2:
        raise DecodeInputError(f"odd number of hex digits ({len(digits)}): a byte is two digits")
    return bytes.fromhex("".join(digits))


def _split(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(offset, wire frame) for each frame, and the trailing bytes that never got their stop flag."""
    splitter = dart.FrameSplitter()
    frames = []
    for pos in range(len(data)):
        for raw in splitter.feed(data[pos:pos + 1]):
            frames.append((pos + 1 - len(raw), raw))
    end = frames[-1][0] + len(frames[-1][1]) if frames else 0
    tail = data[end:]
    while tail and not dart.ADDR_FIRST <= tail[0] <= dart.ADDR_LAST:
        tail = tail[1:]        # noise the splitter dropped, not a frame start
    return frames, tail


def _parse_unchecked(raw: bytes) -> tuple[int, list[tuple[int, bytes]] | None, str]:
    """A data frame's TX#, its transactions (None if they do not split) and payload hex, CRC ignored."""
    body = dart.unescape(raw[2:-1])
    if len(body) < 5 or body[-1] != dart.ETX:
        raise dart.FrameError("data frame without ETX or too short")
    payload = body[:-3]
    items: list[tuple[int, bytes]] = []
    i = 0
    while i < len(payload):
        if i + 2 > len(payload) or i + 2 + payload[i + 1] > len(payload):
            return raw[1] & 0x0F, None, payload.hex()
        items.append((payload[i], payload[i + 2:i + 2 + payload[i + 1]]))
        i += 2 + payload[i + 1]
    return raw[1] & 0x0F, items, payload.hex()


def _decode_frame(raw: bytes) -> tuple[bytes, dart.Frame | None, Exception | None]:
    """(the bytes that were decoded, the frame or None, the error) with dart.decode_resync's skipping."""
    try:
        return raw, dart.decode(raw), None
    except dart.DartError as exc:
        first: Exception = exc
    for i in range(1, len(raw) - 2):
        if dart.ADDR_FIRST <= raw[i] <= dart.ADDR_LAST:
            try:
                return raw[i:], dart.decode(raw[i:]), None
            except dart.DartError:
                pass
    return raw, None, first


def _frame_dict(offset: int, raw: bytes, direction: str | None,
                prev: dict[str, Any] | None) -> dict[str, Any]:
    wire, frame, error = _decode_frame(raw)
    skipped = len(raw) - len(wire)
    addr, ctrl = wire[0], wire[1]
    kind = ctrl & 0xF0
    out: dict[str, Any] = {"offset": offset + skipped, "raw": wire.hex(), "address": f"0x{addr:02X}",
                           "pump": dart.address_pump(addr), "control": f"0x{ctrl:02X}",
                           "kind": KIND_NAMES.get(kind, "UNKNOWN"), "tx": ctrl & 0x0F}
    if skipped:
        out["skipped"] = raw[:skipped].hex()
    same_pump = prev is not None and prev.get("address") == out["address"]
    if kind != dart.DATA:
        out["direction"] = {dart.POLL: TO_PUMP, dart.ACKPOLL: TO_PUMP, dart.EOT: FROM_PUMP}.get(kind)
        if out["direction"] is None and same_pump and prev is not None and prev.get("kind") == "DATA":
            out["direction"] = {TO_PUMP: FROM_PUMP, FROM_PUMP: TO_PUMP}.get(prev.get("direction") or "")
        out["crc_ok"] = None       # short frames carry no CRC
        out["transactions"] = []
        if error is not None:
            out["error"] = str(error)
        return out
    if frame is not None:
        trans: list[tuple[int, bytes]] | None = frame.transactions
        out["crc_ok"] = True
    else:
        try:
            _, trans, payload = _parse_unchecked(wire)
        except dart.DartError:
            out.update(crc_ok=None, transactions=[], error=str(error))
            return out
        out["crc_ok"] = not isinstance(error, dart.CrcError)
        out["payload"] = payload
        if isinstance(error, dart.CrcError):
            out["crc"] = "0x{:04X}".format(int(error.context.get("got", 0)))
            out["crc_expected"] = "0x{:04X}".format(int(error.context.get("want", 0)))
        else:
            out["error"] = str(error)
    basis = "option"
    if direction is None:
        if same_pump and prev is not None and prev.get("kind") in ("POLL", "ACKPOLL"):
            direction, basis = FROM_PUMP, "sequence"     # the answer to a poll
        elif trans and (direction := _structure(trans)) is not None:
            basis = "structure"
        else:
            basis = "undecided"
    out["direction"], out["direction_basis"] = direction, basis
    if out["crc_ok"] and trans is not None and direction is not None:
        out["transactions"] = [_transaction(direction, c, d) for c, d in trans]
        return out
    out["transactions"] = [{"trans": f"0x{c:02X}", "data": d.hex()} for c, d in trans or []]
    if out["crc_ok"] and trans is not None:    # both readings fit: show both, decide neither
        out["note"] = "the frame reads both ways; give --from, or the POLL before it"
        out["readings"] = {way: [_transaction(way, c, d) for c, d in trans] for way in (TO_PUMP, FROM_PUMP)}
    return out


def decode_hex(text: str, direction: str | None = None) -> list[dict[str, Any]]:
    """Decode every frame in a hex capture; direction TO_PUMP/FROM_PUMP forces how data frames read.

    Raises DecodeInputError for odd or non-hex digits and when no complete frame is in the capture.
    """
    if direction not in (None, TO_PUMP, FROM_PUMP):
        raise DecodeInputError(f"direction must be {TO_PUMP} or {FROM_PUMP}")
    data = parse_hex(text)
    frames, tail = _split(data)
    if not frames:
        raise DecodeInputError("no complete DART frame (address 50..6F ... stop flag FA) "
                               f"in {len(data)} bytes")
    out: list[dict[str, Any]] = []
    for offset, raw in frames:
        out.append(_frame_dict(offset, raw, direction, out[-1] if out else None))
    if tail:
        out.append({"offset": len(data) - len(tail), "raw": tail.hex(),
                    "error": "incomplete frame: no stop flag FA before the end of the capture"})
    return out


# -- command line ----------------------------------------------------------------------------------------
def main(argv: Sequence[str], *, direction: str | None = None) -> int:
    """Print each frame of the capture given as hex arguments as one JSON line; 2 on bad input.

    argv may carry `--from to_pump|from_pump` (or `--from=...`) when run as python -m drivers.pump.decode.
    """
    args = list(argv)
    try:
        for i, a in enumerate(args):
            if a.startswith("--from"):
                value = a.partition("=")[2] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
                del args[i:i + (1 if "=" in a else 2)]
                direction = value.replace("-", "_")
                break
        frames = decode_hex(" ".join(args), direction)
    except DecodeInputError as exc:
        print(f"{PROG}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    for f in frames:
        print(json.dumps(f))
    return EXIT_OK


def add_pump_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `pump` with its `decode` subcommand on the forecourt CLI; args.func(args) returns the code."""
    pump: argparse.ArgumentParser = subparsers.add_parser("pump", help="pump line tools (Wayne DART)")
    sub = pump.add_subparsers(dest="pump_command", required=True, metavar="PUMP_COMMAND")
    dec = sub.add_parser("decode", help="decode a hex capture of DART frames, one JSON line per frame",
                         description=(__doc__ or "").split("\n\n")[0],
                         epilog="exit codes: 0 decoded, 2 bad input (not hex, odd digits, no frame)")
    dec.add_argument("hex", nargs="+", help="hex bytes, spaces optional, e.g. 50 20 FA or 5020FA")
    dec.add_argument("--from", dest="direction", choices=(TO_PUMP, FROM_PUMP), default=None,
                     help="how to read data frames (default: from the capture and the contents)")
    dec.set_defaults(func=lambda args: main(args.hex, direction=args.direction))
    return pump


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
