"""drivers.pump.decode: bench captures (hex) -> one JSON line per DART frame; vectors from the Wayne DART line
protocol / application protocol spec, as in tests/test_dart_codec.py."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.pump import dart
from drivers.pump.decode import DecodeInputError, add_pump_parser, decode_hex, main

POLL_1 = "50 20 FA"
EOT_1 = "50 70 FA"
AUTHORIZE_TX7 = "50 37 01 01 06 1E 2A 03 FA"
STATUS_REPLY_TX6 = "50 36 01 01 02 03 04 00 21 80 11 0E 48 03 FA"
BAD_CRC = "50 37 01 01 06 1E 2B 03 FA"          # AUTHORIZE_TX7 with its CRC high byte flipped


def one(text: str, direction: str | None = None) -> dict[str, Any]:
    frames = decode_hex(text, direction)
    assert len(frames) == 1
    json.dumps(frames[0])                     # JSON-able
    return frames[0]


def test_poll() -> None:
    f = one(POLL_1)
    assert (f["address"], f["pump"], f["kind"], f["tx"], f["transactions"]) == ("0x50", 1, "POLL", 0, [])
    assert f["direction"] == "to_pump" and f["crc_ok"] is None    # short frames carry no CRC


def test_eot() -> None:
    f = one(EOT_1.replace(" ", ""))               # spaces are optional
    assert (f["kind"], f["tx"], f["direction"]) == ("EOT", 0, "from_pump")


def test_authorize() -> None:
    f = one(AUTHORIZE_TX7)
    assert (f["kind"], f["tx"], f["crc_ok"], f["direction"]) == ("DATA", 7, True, "to_pump")
    assert f["transactions"] == [{"trans": "0x01", "name": "CD1", "data": "06", "command": "AUTHORIZE",
                                  "command_code": 6}]


def test_status_authorized_with_price() -> None:
    f = one(STATUS_REPLY_TX6)
    assert (f["kind"], f["tx"], f["crc_ok"], f["direction"]) == ("DATA", 6, True, "from_pump")
    dc1, dc3 = f["transactions"]
    assert (dc1["name"], dc1["status"]) == ("DC1", "AUTHORIZED")
    assert (dc3["name"], dc3["price_milli"], dc3["nozzle"], dc3["nozzle_out"]) == ("DC3", 2180, 1, True)


def test_corrupted_crc_still_shown_raw() -> None:
    f = one(BAD_CRC)
    assert f["crc_ok"] is False and f["kind"] == "DATA" and f["tx"] == 7
    assert f["transactions"] == [{"trans": "0x01", "data": "06"}]     # raw, nothing read into fields
    assert (f["crc"], f["crc_expected"]) == ("0x2B1E", "0x2A1E")


def test_capture_with_several_frames_and_noise() -> None:
    cd5 = dart.encode_data(0x51, 1, [(dart.CD5, bytes.fromhex("001659001789"))]).hex()
    dc101 = dart.encode_data(0x51, 2, [(dart.DC101, bytes.fromhex("01" "0000001000" "0000001659"))]).hex()
    text = "00 13 " + POLL_1 + STATUS_REPLY_TX6 + " 50C6FA " + cd5 + " 51 c1 fa " + dc101 + " 51 20"
    frames = decode_hex(text)
    assert [f.get("kind") for f in frames] == ["POLL", "DATA", "ACK", "DATA", "ACK", "DATA", None]
    assert frames[0]["offset"] == 2                                  # the two noise bytes were skipped
    assert frames[1]["direction_basis"] == "sequence"                # the answer to a POLL
    assert frames[2]["direction"] == "to_pump"                       # ACK of a pump's data
    assert frames[3]["pump"] == 2 and frames[3]["transactions"][0]["prices"] == [
        {"nozzle": 1, "price_milli": 1659}, {"nozzle": 2, "price_milli": 1789}]
    assert frames[4]["direction"] == "from_pump"
    totals = frames[5]["transactions"][0]
    assert (totals["name"], totals["nozzle"], totals["volume_cl"], totals["amount_cents"]) == (
        "DC101", 1, 1000, 1659)
    assert "incomplete" in frames[6]["error"]


def test_presets_nozzles_and_unknown_transactions() -> None:
    raw = dart.encode_data(0x50, 3, [(dart.CD2, b"\x01\x02"), (dart.CD3, dart.bcd_encode(1000, 4)),
                                     (dart.CD4, dart.bcd_encode(2500, 4)), (0x44, b"\xab")]).hex()
    t = one(raw)["transactions"]
    assert [x["name"] for x in t] == ["CD2", "CD3", "CD4", "UNKNOWN"]
    assert t[0]["nozzles"] == [1, 2] and t[1]["preset_volume_cl"] == 1000
    assert t[2]["preset_amount_cents"] == 2500 and t[3]["data"] == "ab"


def test_direction_option_and_bad_frames() -> None:
    assert one(AUTHORIZE_TX7, direction="from_pump")["transactions"][0]["status"] == "MAX_REACHED"
    f = one("50 99 FA")
    assert f["kind"] == "UNKNOWN" and "control" in f["error"]


@pytest.mark.parametrize(("text", "why"), [
    ("garbage", "not a hex digit"), ("hello world", "not a hex digit"), ("50 20 F", "odd number"),
    ("502", "odd number"), ("", "no hex digits"), ("DEADBEEF", "no complete DART frame"),
    ("50 20", "no complete DART frame"),
])
def test_bad_input(text: str, why: str) -> None:
    with pytest.raises(DecodeInputError, match=why):
        decode_hex(text)


def test_main_prints_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*POLL_1.split(), *STATUS_REPLY_TX6.split()]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 2
    assert [json.loads(x)["kind"] for x in lines] == ["POLL", "DATA"]
    assert main(["--from=from_pump", AUTHORIZE_TX7]) == 0
    assert json.loads(capsys.readouterr().out)["transactions"][0]["name"] == "DC1"


@pytest.mark.parametrize("argv", [["zz"], ["50", "2"], ["DEAD"], [], ["--from", "sideways", POLL_1]])
def test_main_bad_input_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("forecourt pump decode:") and "Traceback" not in err


def test_cli_parser(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="forecourt")
    add_pump_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pump", "decode", "50", "37", "0101061E2A03FA"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["transactions"][0]["command"] == "AUTHORIZE"
    args = parser.parse_args(["pump", "decode", "5"])
    assert args.func(args) == 2


@given(st.binary(max_size=64))
def test_any_hex_gives_frames_or_exit_2(raw: bytes) -> None:
    for text in (raw.hex(), raw.hex(" "), raw.hex().upper()):
        try:
            frames = decode_hex(text)
        except DecodeInputError:
            assert main([text]) == 2
            continue
        assert frames and dart.SF in raw
        json.dumps(frames)
    # a good frame behind any noise is still found (noise may garble what precedes it, never drop it)
    frames = decode_hex(raw.hex() + " 03 FA " + POLL_1)
    assert frames[-1]["raw"] == "5020fa" and frames[-1]["kind"] == "POLL"


@given(st.text(max_size=40))
def test_any_text_exits_0_or_2(text: str) -> None:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(text.split())
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().startswith("forecourt pump decode:") and err.getvalue().count("\n") == 1
    else:
        assert all(json.loads(line) for line in out.getvalue().splitlines())
