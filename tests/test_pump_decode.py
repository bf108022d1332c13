"""drivers.pump.decode: bench captures (hex) -> one JSON line per DART frame; vectors from the Wayne DART line
protocol / application protocol spec, as in tests/test_dart_codec.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
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


def test_authorize_alone_reads_both_ways_and_says_so() -> None:
    f = one(AUTHORIZE_TX7)                        # CD1 AUTHORIZE and DC1 MAX REACHED are the same bytes
    assert (f["kind"], f["tx"], f["crc_ok"], f["direction"]) == ("DATA", 7, True, None)
    assert f["direction_basis"] == "undecided" and "--from" in f["note"]
    assert f["transactions"] == [{"trans": "0x01", "data": "06"}]
    assert f["readings"]["to_pump"] == [{"trans": "0x01", "name": "CD1", "data": "06", "command": "AUTHORIZE",
                                         "command_code": 6}]
    assert f["readings"]["from_pump"][0]["status"] == "MAX_REACHED"
    f = one(AUTHORIZE_TX7, direction="to_pump")
    assert f["direction_basis"] == "option" and f["transactions"][0]["command"] == "AUTHORIZE"


def test_status_authorized_with_price() -> None:
    f = decode_hex(POLL_1 + STATUS_REPLY_TX6)[1]        # the answer to a POLL: from the pump
    assert (f["kind"], f["tx"], f["crc_ok"], f["direction"]) == ("DATA", 6, True, "from_pump")
    dc1, dc3 = f["transactions"]
    assert (dc1["name"], dc1["status"]) == ("DC1", "AUTHORIZED")
    assert (dc3["name"], dc3["price"], dc3["nozzle"], dc3["nozzle_out"]) == ("DC3", 2180, 1, True)


def test_corrupted_crc_still_shown_raw() -> None:
    f = one(BAD_CRC)
    assert f["crc_ok"] is False and f["kind"] == "DATA" and f["tx"] == 7
    assert f["transactions"] == [{"trans": "0x01", "data": "06"}]     # raw, nothing read into fields
    assert (f["crc"], f["crc_expected"]) == ("0x2B1E", "0x2A1E")


def test_capture_with_several_frames_and_noise() -> None:
    cd5 = dart.encode_data(0x51, 1, [(dart.CD5, bytes.fromhex("001659001789"))]).hex()
    counters = bytes.fromhex("01" "0000001000" "0000001000" "0000000000")
    dc101 = dart.encode_data(0x51, 2, [(dart.DC101, counters)]).hex()
    text = "00 13 " + POLL_1 + STATUS_REPLY_TX6 + " 50C6FA " + cd5 + " 51 c1 fa " + dc101 + " 51 20"
    frames = decode_hex(text)
    assert [f.get("kind") for f in frames] == ["POLL", "DATA", "ACK", "DATA", "ACK", "DATA", None]
    assert frames[0]["offset"] == 2                                  # the two noise bytes were skipped
    assert frames[1]["direction_basis"] == "sequence"                # the answer to a POLL
    assert frames[2]["direction"] == "to_pump"                       # ACK of a pump's data
    assert frames[3]["pump"] == 2 and frames[3]["transactions"][0]["prices"] == [
        {"nozzle": 1, "price": 1659}, {"nozzle": 2, "price": 1789}]
    assert frames[4]["direction"] == "from_pump"
    totals = frames[5]["transactions"][0]
    assert (totals["name"], totals["nozzle"], totals["total"], totals["value"], totals["meter1"]) == (
        "DC101", 1, "volume", 1000, 1000)
    assert "incomplete" in frames[6]["error"]


def test_presets_nozzles_and_unknown_transactions() -> None:
    raw = dart.encode_data(0x50, 3, [(dart.CD2, b"\x01\x02"), (dart.CD3, dart.bcd_encode(1000, 4)),
                                     (dart.CD4, dart.bcd_encode(2500, 4)), (0x44, b"\xab")]).hex()
    t = one(raw)["transactions"]
    assert [x["name"] for x in t] == ["CD2", "CD3", "CD4", "UNKNOWN"]
    assert t[0]["nozzles"] == [1, 2] and t[1]["preset_volume"] == 1000
    assert t[2]["preset_amount"] == 2500 and t[3]["data"] == "ab"


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
    args = parser.parse_args(["pump", "decode", "--from", "to_pump", "50", "37", "0101061E2A03FA"])
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


# -- frames from real pumps (tests/vectors/dart/real_frames.json, sources in its README) -----------------
REAL = json.loads((Path(__file__).parent / "vectors" / "dart" / "real_frames.json").read_text())["frames"]


@pytest.mark.parametrize("vector", REAL, ids=[v["hex"][:23] for v in REAL])
def test_real_frames_decode_with_good_crc_and_their_direction(vector: dict[str, Any]) -> None:
    f = one(vector["hex"])
    assert "error" not in f
    if f["kind"] == "DATA":
        assert f["crc_ok"] is True
    assert f["direction"] == vector["from"]
    if f["direction"] is None:
        assert f["direction_basis"] == "undecided" and set(f["readings"]) == {"to_pump", "from_pump"}


def test_a_status_reply_equal_to_a_command_code_is_not_read_as_a_command() -> None:
    """Issue 11: DC1 5 + DC3 (a real reply) was read as "RESET + CD3 preset"; it reads both ways, so the
    decoder now says it cannot tell, and reads it as the pump's when the POLL before it is in the capture."""
    reply = "51 3C 01 01 05 03 04 00 11 75 01 1A C7 03 FA"
    f = one(reply)
    assert f["direction"] is None and f["direction_basis"] == "undecided"
    dc1, dc3 = decode_hex("51 20 FA " + reply)[1]["transactions"]
    assert (dc1["name"], dc1["status"]) == ("DC1", "FILLING_COMPLETED")
    assert (dc3["price"], dc3["nozzle"], dc3["nozzle_out"]) == (1175, 1, False)


def test_real_totals_frame_reads_its_counter() -> None:
    f = one("51 3D 65 10 01 00 00 00 00 02 00 00 00 00 02 00 00 00 00 00 58 F8 03 FA")
    assert (f["direction"], f["direction_basis"]) == ("from_pump", "structure")
    [t] = f["transactions"]
    assert (t["name"], t["counter"], t["total"], t["nozzle"], t["value"], t["meter1"], t["meter2"]) == (
        "DC101", 1, "volume", 1, 2, 2, 0)
