"""Receipts end to end: firmware.receipt content -> drivers.printer ESC/POS bytes
-> hostsim.escpos_decode text."""

from __future__ import annotations

import datetime as dt
import gc
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ConfigError, MessageError, PrinterError
from contracts.receipt import WIDTH, ReceiptLine
from drivers.printer import ReceiptPrinter, open_printer
from firmware.receipt import fleet_receipt, format_litres, format_money
from hostsim.escpos_decode import Paper, decode_escpos

SALE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
AUTH_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def receipt(**over: object) -> list[ReceiptLine]:
    args: dict[str, object] = {
        "station_name": "Forecourt Demo Station", "station": "ST-001", "terminal": "T-0001",
        "sale_id": SALE_ID,
        "when": dt.datetime(2025, 3, 1, 11, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))), "pump": 2,
        "product": "Diesel", "volume_cl": 2000, "price_milli": 1659, "amount_cents": 3318,
        "card_masked": "707700******0019", "auth_id": AUTH_ID}
    args.update(over)
    return fleet_receipt(**args)  # type: ignore[arg-type]


def printed(lines: list[ReceiptLine]) -> tuple[bytes, str]:
    p = open_printer("memory://")
    p.print_lines(lines)
    return p.output, decode_escpos(p.output).text()


# -- content -----------------------------------------------------------------------------------------------

def test_receipt_text_after_printing_and_decoding() -> None:
    _, text = printed(receipt())
    rows = text.splitlines()
    assert "Forecourt Demo Station" in rows[0] and rows[0].startswith(" ")       # centred
    assert "Station ST-001" in text
    assert "Terminal" in text and "T-0001" in text
    assert any(r.startswith("Product") and r.endswith("Diesel") for r in rows)
    assert any(r.startswith("Volume") and r.endswith("20.00 L") for r in rows)
    assert any(r.startswith("Unit price") and r.endswith("1.659 EUR/L") for r in rows)
    assert any(r.startswith("TOTAL") and r.endswith("33.18 EUR") for r in rows)
    assert any(r.startswith("Fleet card") and r.endswith("707700******0019") for r in rows)
    assert "7077001000000019" not in text
    assert any(r.startswith("Pump") and r.endswith(" 2") for r in rows)
    assert any(r.startswith("Auth") and r.endswith("7C9E6679") for r in rows)
    assert SALE_ID in rows
    assert "Date               2025-03-01 10:11:12 UTC" in rows       # converted to UTC
    assert all(len(r) <= WIDTH for r in rows)
    assert "DUPLICATE" not in text


def test_pairs_fill_the_line_exactly() -> None:
    for line in receipt():
        if line.text.startswith(("Terminal", "Volume", "TOTAL", "Fleet card", "Date")):
            assert len(line.text) == WIDTH


def test_total_is_bold_and_title_centred() -> None:
    lines = receipt()
    assert lines[0].bold and lines[0].center
    total = next(line for line in lines if line.text.startswith("TOTAL"))
    assert total.bold and not total.center
    out, _ = printed(lines)
    # ESC E 1 (bold on) comes right before the TOTAL line: Epson ESC/POS reference, "ESC E n"
    assert b"\x1bE\x01\x1ba\x00TOTAL" in out


def test_duplicate_copy_is_marked() -> None:
    _, text = printed(receipt(copy=True))
    assert "*** DUPLICATE ***" in text


def test_currency_is_used_everywhere() -> None:
    _, text = printed(receipt(currency="CHF"))
    assert "33.18 CHF" in text and "1.659 CHF/L" in text and "EUR" not in text


def test_long_names_are_still_separated() -> None:
    line = next(x for x in receipt(product="P" * 60) if x.text.startswith("Product"))
    # at least one space, never glued together; cut to the paper's width
    assert line.text == "Product " + "P" * (WIDTH - len("Product "))


@pytest.mark.parametrize(("cents", "text"), [
    (0, "0.00 EUR"), (1, "0.01 EUR"), (99, "0.99 EUR"), (100, "1.00 EUR"), (3318, "33.18 EUR"),
    (123456789, "1234567.89 EUR"), (-5, "-0.05 EUR"), (-150, "-1.50 EUR"), (-100, "-1.00 EUR"),
])
def test_format_money(cents: int, text: str) -> None:
    assert format_money(cents) == text


def test_format_money_currency() -> None:
    assert format_money(250, "USD") == "2.50 USD"


@pytest.mark.parametrize(("cl", "text"), [(0, "0.00"), (5, "0.05"), (10, "0.10"), (99, "0.99"), (100, "1.00"),
                                          (2000, "20.00"), (15000, "150.00"), (123456, "1234.56")])
def test_format_litres(cl: int, text: str) -> None:
    assert format_litres(cl) == text


@settings(max_examples=200)
@given(cents=st.integers(-10**9, 10**9))
def test_format_money_parses_back(cents: int) -> None:
    number, currency = format_money(cents).split(" ")
    assert currency == "EUR"
    whole, frac = number.lstrip("-").split(".")
    assert len(frac) == 2
    assert (-1 if number.startswith("-") else 1) * (int(whole) * 100 + int(frac)) == cents


@settings(max_examples=200)
@given(cl=st.integers(0, 10**7))
def test_format_litres_parses_back(cl: int) -> None:
    whole, frac = format_litres(cl).split(".")
    assert len(frac) == 2 and int(whole) * 100 + int(frac) == cl


@settings(max_examples=100, deadline=None)
@given(volume=st.integers(0, 15000), price=st.integers(1, 999_999), amount=st.integers(0, 10**8),
       pump=st.integers(1, 32),
       product=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
def test_realistic_receipts_fit_the_paper(volume: int, price: int, amount: int, pump: int,
                                          product: str) -> None:
    lines = receipt(volume_cl=volume, price_milli=price, amount_cents=amount, pump=pump, product=product)
    assert all(len(line.text) <= WIDTH for line in lines)
    _, text = printed(lines)
    assert all(len(r) <= WIDTH for r in text.splitlines())
    assert f"{format_litres(volume)} L" in text


# -- the printer driver ------------------------------------------------------------------------------------

def test_memory_printer_output_structure() -> None:
    out, _ = printed(receipt())
    assert out.startswith(b"\x1b@")               # ESC @ initialise
    assert out.endswith(b"\x1dV\x00")             # GS V 0: full cut
    assert out.count(b"\n") >= len(receipt())


def test_two_receipts_decode_as_two() -> None:
    p = open_printer("memory://")
    p.print_lines(receipt())
    p.print_lines(receipt(sale_id="11111111-2222-3333-4444-555555555555"))
    paper = decode_escpos(p.output)
    assert len(paper.receipts) == 2 and paper.current == []
    assert SALE_ID in paper.receipts[0] and "11111111-2222-3333-4444-555555555555" in paper.receipts[1]
    assert paper.receipts[0][-1].strip() == "Thank you"      # feed lines before the cut are dropped


def test_file_printer(tmp_path: Path) -> None:
    target = tmp_path / "lp0"
    p = open_printer(f"file://{target}")
    p.print_lines(receipt())
    p.close()
    expected, _ = printed(receipt())
    assert target.read_bytes() == expected


def test_file_printer_to_a_missing_directory_is_a_printer_error(tmp_path: Path) -> None:
    p = open_printer(f"file://{tmp_path}/no/such/dir/lp0")
    with pytest.raises(PrinterError):
        p.print_lines(receipt())
    p.close()


@pytest.mark.parametrize("url", ["lp0", "usb://04b8:0202", "tcp://127.0.0.1", "tcp://printer:abc", "memory:"])
def test_bad_printer_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_printer(url)
    assert info.value.context["key"] == "devices.printer"


def test_backend_failure_becomes_printer_error() -> None:
    class Broken:
        def hw(self, what: str) -> None:
            raise OSError("paper out")

    with pytest.raises(PrinterError) as info:
        ReceiptPrinter(Broken()).print_lines(receipt())
    assert info.value.context == {"error": "OSError"}
    assert isinstance(info.value.__cause__, OSError)


class JobServer:
    """A raw-port (9100 style) printer: collects the bytes of each connection."""

    def __init__(self, port: int = 0) -> None:
        self.srv = socket.create_server(("127.0.0.1", port))
        self.srv.settimeout(0.05)          # so close() can stop the accept loop
        self.stopping = threading.Event()
        self.port = self.srv.getsockname()[1]
        self.jobs: list[bytes] = []
        self.done = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            data = bytearray()
            with conn:
                while chunk := conn.recv(65536):
                    data += chunk
            with self.done:
                self.jobs.append(bytes(data))
                self.done.notify_all()

    def wait(self, n: int, timeout: float = 5.0) -> list[bytes]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.jobs) >= n, timeout), self.jobs
            return list(self.jobs)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.srv.close()


@pytest.fixture
def job_server() -> Iterator[JobServer]:
    s = JobServer()
    try:
        yield s
    finally:
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_network_printer_receives_each_job_on_its_own_connection(job_server: JobServer) -> None:
    p = open_printer(f"tcp://127.0.0.1:{job_server.port}")
    p.print_lines(receipt())
    first = job_server.wait(1)[0]
    expected, _ = printed(receipt())
    assert first == expected
    assert SALE_ID in decode_escpos(first).text()
    p.print_lines(receipt(copy=True))
    jobs = job_server.wait(2)
    assert "*** DUPLICATE ***" in decode_escpos(jobs[1]).text()
    p.close()


# python-escpos leaks the socket of a failed connect
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_unreachable_network_printer_is_a_printer_error() -> None:
    p = open_printer(f"tcp://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(PrinterError) as info:
            p.print_lines(receipt())
        assert info.value.context == {"error": "DeviceNotFoundError"}
        del info
    finally:
        p.close()
        gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_network_printer_recovers_after_a_printer_restart() -> None:
    port = free_port()
    p = open_printer(f"tcp://127.0.0.1:{port}")
    try:
        with pytest.raises(PrinterError):
            p.print_lines(receipt())                # printer off
        server = JobServer(port)                    # printer back on
        try:
            p.print_lines(receipt())
            assert SALE_ID in decode_escpos(server.wait(1)[0]).text()
        finally:
            server.close()
    finally:
        p.close()
        gc.collect()


# -- the decoder -------------------------------------------------------------------------------------------

def test_decode_alignment_bold_and_feed() -> None:
    # Epson ESC/POS: ESC a n (0 left, 1 centre, 2 right; 48-50 the same), ESC E n, ESC d n feeds n lines
    data = (b"\x1b@" b"\x1ba\x01mid\n" b"\x1ba\x32right\n" b"\x1ba\x00\x1bE\x01left\n" b"\x1bd\x02"
            b"after\r\n" b"\x1dVA\x03")
    paper = decode_escpos(data, width=10)
    assert paper.receipts == [["   mid", "     right", "left", "", "", "after"]]


def test_decode_text_without_cut_stays_current() -> None:
    paper = decode_escpos(b"abc\ndef")
    assert paper.receipts == [] and paper.current == ["abc", "def"]
    assert paper.text() == "abc\ndef"
    assert decode_escpos(b"").text() == ""


def test_decode_cp437_text() -> None:
    assert decode_escpos(b"\x1bt\x00M\x81ller\n").current == ["Müller"]


def test_non_cp437_text_round_trips() -> None:
    _, text = printed([ReceiptLine("Station Øresund"), ReceiptLine("Prix 1,50 €")])
    assert text.splitlines() == ["Station Øresund", "Prix 1,50 €"]


@pytest.mark.parametrize(("data", "why"), [
    (b"\x1bx", "unknown"),                   # ESC x is not a command the printer takes
    (b"ok\x1d(k\x03\x00", "unknown"),        # GS ( k (2D code) is not supported
    (b"\x1b", "unknown"),                    # a lone ESC at the end
    (b"\x1bE", "truncated"),
    (b"\x1ba", "truncated"),
    (b"text\x1bd", "truncated"),
    (b"\x1dV", "truncated"),
])
def test_decode_bad_commands(data: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        decode_escpos(data)


@pytest.mark.parametrize("data", [b"abc\n\x1dVA", b"abc\n\x1dVB"])
def test_truncated_partial_cut_with_feed_is_an_error(data: bytes) -> None:
    with pytest.raises(MessageError, match="truncated"):
        decode_escpos(data)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_is_paper_or_message_error(data: bytes) -> None:
    try:
        paper = decode_escpos(data)
    except MessageError:
        return
    assert isinstance(paper, Paper)
    assert isinstance(paper.text(), str)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=42), min_size=1,
                     max_size=8))
def test_printed_lines_decode_back(rows: list[str]) -> None:
    _, text = printed([ReceiptLine(r) for r in rows])
    paper_rows = text.splitlines()
    while rows and rows[-1] == "":
        rows = rows[:-1]
    assert paper_rows == rows


def test_long_names_never_overflow_the_paper() -> None:
    import datetime as _dt

    from contracts.receipt import WIDTH
    from firmware.receipt import fleet_receipt

    lines = fleet_receipt(station_name="S" * 200, station="ST-001", terminal="T-0001", sale_id="x",
                          when=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC), pump=1, product="P" * 200,
                          volume_cl=2000, price_milli=1659, amount_cents=3318, card_masked="707700******0019",
                          auth_id="abcdef12")
    assert all(len(line.text) <= WIDTH for line in lines)
