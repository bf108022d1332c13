"""Round trips of the line and network formats (fuzz/targets_wire.py), bounded for `make test`; every
target's "parses or raises its typed error" property is in tests/test_fuzz_targets.py."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import iso8583, messages
from contracts.receipt import ReceiptLine
from drivers.printer.escpos_printer import open_printer
from drivers.pump import dart
from fuzz.strategies import BOUNDED

UUIDS = st.uuids().map(str)


ADDRESSES = st.integers(dart.ADDR_FIRST, dart.ADDR_LAST)
TRANSACTIONS = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), min_size=1, max_size=4)
FRAMES = st.one_of(
    st.builds(dart.Frame, ADDRESSES, st.just(dart.DATA), st.integers(0, 15), TRANSACTIONS),
    st.builds(dart.Frame, ADDRESSES, st.sampled_from([dart.EOT, dart.NAK, dart.ACK, dart.ACKPOLL]),
              st.integers(0, 15)),
    st.builds(dart.Frame, ADDRESSES, st.just(dart.POLL)))


@BOUNDED
@given(st.lists(FRAMES, min_size=1, max_size=5), st.binary(max_size=6).filter(lambda b: dart.SF not in b))
def test_dart_frames_survive_the_line(frames: list[dart.Frame], noise: bytes) -> None:
    """decode(encode(f)) == f, and the deframer gives back every frame of a stream, noise in front."""
    wire = [dart.encode_frame(f) for f in frames]
    assert [dart.decode(w) for w in wire] == frames
    noise = bytes(b for b in noise if not dart.ADDR_FIRST <= b <= dart.ADDR_LAST)
    assert dart.FrameSplitter().feed(noise + b"".join(wire)) == wire


# What the receipts in en/de/fr print: ASCII, Latin-1 letters, the euro sign.
RECEIPT_TEXT = st.text(st.sampled_from(string.ascii_letters + string.digits + string.punctuation + " "
                                       + "äöüÄÖÜßéèêëàâçîïôùûÉÈÇ€£°"), min_size=1, max_size=42)


def printed(lines: list[ReceiptLine]) -> bytes:
    printer = open_printer("memory://")
    printer.print_lines(lines)
    return printer.output


@BOUNDED
@given(st.lists(st.builds(ReceiptLine, RECEIPT_TEXT, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_printed_receipt_reads_back(lines: list[ReceiptLine]) -> None:
    """The simulator's decoder reads back what the printer driver (python-escpos) sends."""
    from hostsim.escpos_decode import decode_escpos

    want = [line.text.strip().center(42).rstrip() if line.center else line.text.rstrip() for line in lines]
    while want and not want[-1]:
        want.pop()                      # blank lines before the cut do not show on paper
    assert decode_escpos(printed(lines)).receipts == [want]


@pytest.mark.parametrize("text", ["œ", "Ÿ", "Š", "ý"])
def test_printed_receipt_in_code_page_16_reads_back(text: str) -> None:
    """python-escpos sends these in WPC1252 (ESC t 16), which the decoder once took for a multi-byte page."""
    from hostsim.escpos_decode import decode_escpos

    assert decode_escpos(printed([ReceiptLine(text)])).receipts == [[text]]


@BOUNDED
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 10 ** (2 * n) - 1))))
def test_bcd_round_trip(case: tuple[int, int]) -> None:
    nbytes, value = case
    assert dart.bcd_decode(dart.bcd_encode(value, nbytes)) == value


@BOUNDED
@given(st.fixed_dictionaries({
    "t": st.sampled_from(["0110", "0230", "0430"]), "11": st.from_regex(r"[0-9]{6}", fullmatch=True),
    "39": st.from_regex(r"[0-9A-Z]{2}", fullmatch=True)}, optional={
    "4": st.from_regex(r"[0-9]{12}", fullmatch=True),
    "37": st.from_regex(r"[0-9A-Za-z ]{12}", fullmatch=True),
    "38": st.from_regex(r"[0-9A-Za-z ]{6}", fullmatch=True),
    "55": st.binary(max_size=60).map(lambda b: b.hex().upper())}))
def test_iso8583_round_trip(doc: dict[str, str]) -> None:
    decoded = iso8583.decode(iso8583.encode(doc))
    assert {k: v for k, v in decoded.items() if k != "p"} == doc      # p: the bitmap the codec adds


@BOUNDED
@given(UUIDS, st.sampled_from(["stored", "duplicate", "rejected"]),
       st.text(st.characters(min_codepoint=0x20), max_size=200))
def test_mqtt_sale_ack_round_trip(sale_id: str, status: str, reason: str) -> None:
    doc = {"sale_id": sale_id, "status": status, "reason": reason}
    assert messages.decode(messages.encode(doc, messages.SALE_ACK), messages.SALE_ACK) == doc


@BOUNDED
@given(UUIDS, UUIDS, st.integers(1, 10**7), st.lists(st.integers(1, 15), max_size=15))
def test_mqtt_auth_answer_round_trip(request_id: str, auth_id: str, allowed: int, nozzles: list[int]) -> None:
    answer = messages.AuthAnswer(request_id, True, None, auth_id, allowed, tuple(nozzles), None)
    raw = messages.encode(answer.to_doc(), messages.AUTH_RESPONSE)
    assert messages.AuthAnswer.from_doc(messages.decode(raw, messages.AUTH_RESPONSE)) == answer
