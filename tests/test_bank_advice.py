"""firmware.programs.bank.advice: the card context kept between pre-authorization and advice, the STAN
counter, the final 0220/0420, and the forwarder that delivers queued advices to a real (simulated) acquirer
over TCP. Also the bank receipt: cvm_text and entry_text of firmware.programs.bank.summary, and
firmware.programs.bank.receipt.bank_receipt_for over a sale read back from a real journal."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.errors import SyncError
from contracts.receipt import ReceiptLine
from drivers.acquirer import AcquirerLink
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import AdviceKind, StoreAndForward
from firmware.programs.bank.advice import AdviceForwarder, CardContext, Sold, Stan, build_final_advice
from firmware.programs.bank.receipt import bank_receipt_for
from firmware.programs.bank.summary import BankSummary, cvm_text, entry_text
from firmware.programs.base import ReceiptHead
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord
from hostsim.acquirer_host import AcquirerHost

PAN = "4761739001010010"  # Visa test PAN (Luhn-valid), as in firmware.acquirer.messages' doctest
ICC = "9F2608A1B2C3D4E5F607189F2701809F360200A5"
TERMINAL = iso.Terminal("AFD00001", "000000000123456", "FORECOURT 1 HIGH STREET", acquirer_id="4711")
SOLD = Sold("diesel", 2605, 1659)       # 26.05 L at 1.659 a litre
WHEN = dt.datetime(2025, 3, 14, 9, 30, 0, tzinfo=dt.UTC)
KEY = bytes(range(32))


def context(**overrides: object) -> CardContext:
    values: dict[str, object] = {
        "pan": PAN, "expiry": "2812", "entry_mode": "051", "pan_sequence": "01", "pump": 3,
        "requested": 15000, "stan": "000042", "transmission": "0314092653", "icc": ICC,
        "approved": 12000, "rrn": "000000000777", "auth_code": "A1B2C3"}
    values.update(overrides)
    return CardContext(**values)  # type: ignore[arg-type]


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# -- CardContext ----------------------------------------------------------------------------------------


def test_card_context_round_trips_through_bytes() -> None:
    ctx = context()
    raw = ctx.dumps()
    assert isinstance(raw, bytes)
    back = CardContext.loads(raw)
    assert back == ctx
    assert (back.pan, back.approved, back.rrn, back.icc) == (PAN, 12000, "000000000777", ICC)
    # the defaults of a context held before the 0110 survive too
    early = CardContext(pan=PAN, expiry="2812", entry_mode="901", pan_sequence=None, pump=1,
                        requested=5000, stan="000001", transmission="0314092653")
    again = CardContext.loads(early.dumps())
    assert again == early
    assert ((again.approved, again.rrn, again.auth_code, again.icc, again.pan_sequence)
            == (0, None, None, "", None))


@pytest.mark.parametrize("raw", [
    b"",
    b"\xff\xfe\x00",                         # not UTF-8
    b'{"pan": "4761739001010010"',           # cut short
    b"null",
    b"[1, 2, 3]",
    b'{"pan": "4761739001010010"}',          # fields missing
    b'{"unexpected": 1}',
    context().dumps()[:-1] + b', "surplus": 1}',   # a key the dataclass does not have
    context().dumps()[:40],
])
def test_damaged_context_is_a_sync_error(raw: bytes) -> None:
    with pytest.raises(SyncError, match="damaged"):
        CardContext.loads(raw)


def test_deeply_nested_context_is_a_sync_error_not_a_recursion_error() -> None:
    """Defect (fuzz target card_context): json.loads of 5000 nested lists raised RecursionError."""
    for raw in (b"[" * 5000, b'{"pan": ' * 5000):
        with pytest.raises(SyncError, match="damaged"):
            CardContext.loads(raw)


def test_card_context_repr_has_no_card_number() -> None:
    ctx = context()
    text = repr(ctx)
    assert "pump=3" in text and "000042" in text and "12000" in text
    assert PAN not in text and PAN[:6] not in text and PAN[-4:] not in text
    assert "2812" not in text and "A1B2C3" not in text      # nor the expiry or auth code
    assert PAN not in str(ctx) and PAN not in f"{[ctx]}"


def test_card_and_original_views() -> None:
    ctx = context()
    assert ctx.card == iso.Card(pan=PAN, expiry="2812", entry_mode="051", pan_sequence="01")
    assert ctx.card.track2 is None
    assert ctx.original == iso.Original(stan="000042", transmission="0314092653", rrn="000000000777",
                                        auth_code="A1B2C3")
    assert ctx.original.mti == "0100"
    assert ctx.original.field_90() == "0100" + "000042" + "0314092653" + "0" * 22


# -- Stan -----------------------------------------------------------------------------------------------


class Store:
    def __init__(self, value: str | None = None) -> None:
        self.value = value
        self.saved: list[str] = []

    def load(self) -> str | None:
        return self.value

    def save(self, value: str) -> None:
        self.saved.append(value)
        self.value = value


def test_stan_counts_from_one_and_saves_every_value() -> None:
    store = Store()
    stan = Stan(store.load, store.save)
    assert [stan.next() for _ in range(4)] == [1, 2, 3, 4]
    assert store.saved == ["1", "2", "3", "4"]


def test_stan_continues_from_the_stored_value_and_wraps_to_one() -> None:
    store = Store("999997")
    stan = Stan(store.load, store.save)
    assert [stan.next() for _ in range(4)] == [999998, 999999, 1, 2]
    assert store.saved == ["999998", "999999", "1", "2"]


def test_stan_is_saved_before_it_is_returned() -> None:
    seen: list[tuple[str, str | None]] = []
    store = Store("41")

    def save(value: str) -> None:
        seen.append((value, store.value))
        store.save(value)

    assert Stan(store.load, save).next() == 42
    assert seen == [("42", "41")]


def test_stan_survives_a_restart_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    try:
        stan = Stan(lambda: j.get_value("acquirer_stan"), lambda v: j.put("acquirer_stan", v))
        assert [stan.next() for _ in range(3)] == [1, 2, 3]
    finally:
        j.close()
    j2 = Journal(path)
    try:
        assert j2.get_value("acquirer_stan") == "3"
        stan = Stan(lambda: j2.get_value("acquirer_stan"), lambda v: j2.put("acquirer_stan", v))
        assert stan.next() == 4
        assert j2.get_value("acquirer_stan") == "4"
    finally:
        j2.close()


def test_stan_gives_distinct_values_to_threads(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    threads, each = 8, 40
    got: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)
    try:
        stan = Stan(lambda: j.get_value("acquirer_stan"), lambda v: j.put("acquirer_stan", v))

        def worker(n: int) -> None:
            start.wait()
            for _ in range(each):
                got[n].append(stan.next())

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=30)
        values = [v for part in got for v in part]
        assert len(values) == threads * each
        assert sorted(values) == list(range(1, threads * each + 1))
        assert all(part == sorted(part) for part in got)       # each thread sees its values rise
        assert j.get_value("acquirer_stan") == str(threads * each)
    finally:
        j.close()


# -- build_final_advice ---------------------------------------------------------------------------------


def test_completion_advice_for_what_was_dispensed() -> None:
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=4321, stan=43, when=WHEN,
                                   sold=SOLD)
    assert kind is AdviceKind.COMPLETION
    doc = iso.decode(raw)
    assert doc["t"] == "0220"
    assert doc["4"] == "000000004321"                      # what was dispensed: the host settles field 4
    assert doc["11"] == "000043"
    assert doc["7"] == "0314093000"
    assert doc["90"] == "0100" + "000042" + "0314092653" + "00000004711" + "0" * 11
    assert (doc["37"], doc["38"]) == ("000000000777", "A1B2C3")
    assert doc["55"] == ICC and doc["32"] == "4711" and doc["61"] == "1000000002"
    assert (doc["2"], doc["14"], doc["22"], doc["23"]) == (PAN, "2812", "051", "001")
    assert (doc["41"], doc["42"], doc["49"]) == ("AFD00001", "000000000123456", "978")
    for absent in ("35", "39", "52", "62", "95", "110"):
        assert absent not in doc


def test_completion_carries_the_pumps_fuel_figures() -> None:
    """Defect: no fuel data in the completion. Product (Conexxus code), litres, unit price: field 63."""
    _, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=4321, stan=43, when=WHEN,
                                   sold=SOLD)
    (line,) = iso.parse_fuel(iso.decode(raw)["63"])
    assert (line.product, line.unit, line.quantity_milli, line.unit_price_milli, line.amount) == (
        "019", "L", 26_050, 1_659, 4321)
    _, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=100, stan=44, when=WHEN,
                                sold=Sold("hydrogen", 10, 1000))
    assert iso.parse_fuel(iso.decode(raw)["63"])[0].product == "099"   # unknown product: other fuel


def test_completion_is_capped_at_the_approved_amount() -> None:
    kind, raw = build_final_advice(context(approved=5000), terminal=TERMINAL, dispensed=5003, stan=44,
                                   when=WHEN, sold=SOLD)
    doc = iso.decode(raw)
    assert kind is AdviceKind.COMPLETION and doc["t"] == "0220"
    assert doc["4"] == "000000005000" and iso.parse_fuel(doc["63"])[0].amount == 5000


def test_nothing_dispensed_is_a_reversal_17() -> None:
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=0, stan=45, when=WHEN)
    doc = iso.decode(raw)
    assert kind is AdviceKind.REVERSAL
    assert doc["t"] == "0420"
    assert doc["39"] == "17"
    assert doc["4"] == "000000012000"                      # the whole approval is released
    assert doc["90"].startswith("0100000042")
    assert (doc["37"], doc["38"], doc["55"]) == ("000000000777", "A1B2C3", ICC)
    for absent in ("35", "52", "62", "63", "95", "110"):
        assert absent not in doc


def test_timeout_without_approval_reverses_the_requested_amount_68() -> None:
    ctx = context(approved=0, rrn=None, auth_code=None)
    kind, raw = build_final_advice(ctx, terminal=TERMINAL, dispensed=0, stan=46, when=WHEN,
                                   reason=iso.ReversalReason.TIMEOUT)
    doc = iso.decode(raw)
    assert kind is AdviceKind.REVERSAL and doc["t"] == "0420"
    assert doc["39"] == "68"
    assert doc["4"] == "000000015000"                      # requested: nothing was approved
    assert "37" not in doc and "38" not in doc
    assert doc["90"] == "0100" + "000042" + "0314092653" + "00000004711" + "0" * 11


def test_card_declined_after_approval_is_a_reversal_06() -> None:
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=0, stan=47, when=WHEN,
                                   reason=iso.ReversalReason.CARD_DECLINED)
    doc = iso.decode(raw)
    assert kind is AdviceKind.REVERSAL and doc["t"] == "0420"
    assert doc["39"] == "06"
    assert doc["4"] == "000000012000"


def test_a_reason_reverses_even_when_something_was_dispensed() -> None:
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=100, stan=48, when=WHEN,
                                   reason=iso.ReversalReason.CARD_DECLINED)
    assert kind is AdviceKind.REVERSAL and iso.decode(raw)["39"] == "06"


def test_advice_without_icc_data_has_no_field_55() -> None:
    ctx = context(entry_mode="901", pan_sequence=None, icc="")
    _, raw = build_final_advice(ctx, terminal=TERMINAL, dispensed=2500, stan=49, when=WHEN)
    doc = iso.decode(raw)
    assert doc["22"] == "901"
    assert "55" not in doc and "23" not in doc and "35" not in doc


# -- AdviceForwarder against a simulated acquirer ---------------------------------------------------------


@pytest.fixture
def saf(tmp_path: Path) -> Iterator[StoreAndForward]:
    store = StoreAndForward(tmp_path / "saf.sqlite", KEY)
    try:
        yield store
    finally:
        store.close()


def queue_completion(saf: StoreAndForward, sale_id: str = "sale-1") -> bytes:
    saf.hold(sale_id, context().dumps())
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=4321, stan=43, when=WHEN)
    saf.settle(kind, sale_id, raw)
    assert saf.held(sale_id) is None                      # settle erased the card context
    return raw


def test_forwarder_delivers_a_queued_advice_once(saf: StoreAndForward) -> None:
    raw = queue_completion(saf)
    host = AcquirerHost({}).start()
    host.remember("000042", "0314092653", 12000)
    link = AcquirerLink("127.0.0.1", host.port, connect_timeout=1.0, response_timeout=1.0)
    forwarder = AdviceForwarder(saf, link, timeout=1.0, interval=0.05)
    try:
        forwarder.start()
        forwarder.kick()
        assert wait_until(lambda: not saf.pending())
        assert len(host.advices) == 1 and host.settled_total == 4321
        assert host.advices[0]["t"] == "0220"
        assert host.advices[0] == iso.decode(raw)
        # further rounds send nothing more
        forwarder.kick()
        time.sleep(0.3)
        assert len(host.advices) == 1
        assert [d["code"] for d in host.decisions] == ["00"]
        assert saf.has_advice("sale-1", AdviceKind.COMPLETION)
    finally:
        forwarder.stop()
        link.close()
        host.stop()


def test_forwarder_keeps_the_advice_while_the_host_is_down_then_repeats_it(saf: StoreAndForward) -> None:
    queue_completion(saf, "sale-2")
    first = AcquirerHost({}).start()
    port = first.port
    first.stop()                                            # nobody listens on this port now
    link = AcquirerLink("127.0.0.1", port, connect_timeout=0.5, response_timeout=1.0)
    forwarder = AdviceForwarder(saf, link, timeout=1.0, interval=0.05)
    second: AcquirerHost | None = None
    try:
        forwarder.start()
        forwarder.kick()
        assert wait_until(lambda: saf.pending()[0].attempts >= 2)
        pending = saf.pending()
        assert len(pending) == 1 and pending[0].sale_id == "sale-2"
        assert pending[0].last_response is None

        second = AcquirerHost({}, port=port).start()
        second.remember("000042", "0314092653", 12000)
        forwarder.kick()
        assert wait_until(lambda: not saf.pending())
        assert len(second.advices) == 1
        doc = second.advices[0]
        assert doc["t"] == "0221"                          # a repeat: it was attempted before
        assert doc["4"] == "000000004321" and doc["11"] == "000043"
        assert second.decisions[0]["reason"] == "advice repeat"
    finally:
        forwarder.stop()
        link.close()
        if second is not None:
            second.stop()


def test_forwarder_stop_ends_its_thread(saf: StoreAndForward) -> None:
    link = AcquirerLink("127.0.0.1", 9, connect_timeout=0.2, response_timeout=0.2)
    forwarder = AdviceForwarder(saf, link, timeout=0.2, interval=30.0).start()
    forwarder.stop()                                       # must not wait for the 30 s interval
    assert not forwarder._thread.is_alive()


# -- the bank receipt -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("results", "text"), [
    ("420300", "PIN verified online"),
    ("020300", "PIN verified online"),
    ("440302", "PIN verified by card"),
    ("410302", "PIN verified by card"),
    ("1F0302", "No CVM"),
    ("3F0000", "No CVM performed"),
    ("410301", "PIN verified by card (failed)"),
    ("420301", "PIN verified online (failed)"),
    ("1E0300", "CVM 1E"),
    ("online_pin", "Online PIN"),
    ("", "-"),
    ("42", "-"),
    ("4203000", "-"),
    ("garbage", "-"),
])
def test_cvm_text(results: str, text: str) -> None:
    assert cvm_text(results) == text


# a damaged journal "bank" summary must print "-" on the receipt, not stop it
@pytest.mark.parametrize("results", ["ZZZZZZ", "xyzxyz"])
def test_cvm_text_of_six_non_hex_characters_is_a_dash(results: str) -> None:
    assert cvm_text(results) == "-"


@pytest.mark.parametrize(("mode", "text"), [
    ("051", "Chip"), ("801", "Magstripe fallback"), ("901", "Magstripe"), ("071", "071"), ("", ""),
])
def test_entry_text(mode: str, text: str) -> None:
    assert entry_text(mode) == text


CHIP_SUMMARY = BankSummary(entry_mode="051", preauth_cents=15000, cvm_results="420300", aid="A0000000031010",
                           app_label="VISA DEBIT", cryptogram="TC", tvr="0000008000", tsi="E800", arc="00",
                           response_code="00", auth_code="A1B2C3", rrn="000000000777", approved_cents=12000,
                           partial=True)


def journaled_sale(tmp_path: Path, data: dict[str, object], *, charged_cents: int = 1410,
                   preset: Preset | None = None) -> SaleRecord:
    """A completed bank sale as the sale machine journals it, read back from a reopened journal."""
    path = tmp_path / "journal.db"
    j = Journal(path)
    try:
        j.begin_sale("b1", 3, "476173******0010", "t" * 32, program="bank")
        j.transition("b1", SaleState.AUTHORIZING, data={"entry_mode": "051", "preauth_cents": 15000})
        j.transition("b1", SaleState.APPROVED, preset=preset or Preset.amount(12000), nozzles=[1],
                     reference="A1B2C3", data=data)
        j.transition("b1", SaleState.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
        j.transition("b1", SaleState.COMPLETED, nozzle=1, product="diesel", volume_cl=850, amount_cents=1410,
                     charged_cents=charged_cents, price_milli=1659, finished_at=WHEN.timestamp())
    finally:
        j.close()
    j = Journal(path)
    try:
        return j.get("b1")
    finally:
        j.close()


def head(sale: SaleRecord, copy: bool = False) -> ReceiptHead:
    return ReceiptHead(station_name="Test Station", station="ST-001", terminal="AFD00001", sale_id=sale.id,
                       when=WHEN, pump=sale.pump, product="Diesel", volume_cl=sale.volume_cl or 0,
                       price_milli=sale.price_milli or 0, amount_cents=sale.amount_cents or 0,
                       card_masked=sale.card_masked, currency="EUR", copy=copy)


def rows(lines: list[ReceiptLine]) -> dict[str, str]:
    """Receipt rows as label -> value ("Auth code   A1B2C3" -> {"Auth code": "A1B2C3"})."""
    out = {}
    for line in lines:
        left, _, right = line.text.rstrip().rpartition("  ")
        if left.strip():
            out[left.strip()] = right.strip()
    return out


def test_bank_receipt_of_a_journaled_chip_sale(tmp_path: Path) -> None:
    sale = journaled_sale(tmp_path, CHIP_SUMMARY.to_doc())
    assert sale.data == CHIP_SUMMARY.to_doc()
    lines = bank_receipt_for(sale, head(sale))
    got = rows(lines)
    assert got["Card"] == "476173******0010"
    assert (got["Application"], got["AID"], got["Entry"], got["Verification"]) == (
        "VISA DEBIT", "A0000000031010", "Chip", "PIN verified online")
    assert got["Auth code"] == "A1B2C3"                    # the sale's reference
    assert got["Pre-authorized (partial)"] == "120.00 EUR"  # the preset, partial from the summary
    assert got["Charged"] == "14.10 EUR" and got["TOTAL"] == "14.10 EUR"
    assert (got["TVR"], got["TSI"]) == ("0000008000", "E800")
    assert (got["Pump"], got["Volume"]) == ("3", "8.50 L")
    assert all("4761739001010010" not in line.text for line in lines)
    assert not any("DUPLICATE" in line.text for line in lines)
    assert any("DUPLICATE" in line.text for line in bank_receipt_for(sale, head(sale, copy=True)))


def test_bank_receipt_charges_what_the_sale_charged(tmp_path: Path) -> None:
    """An adjunct's discount: the pump's figures say 14.10, the card was charged 13.10."""
    sale = journaled_sale(tmp_path, CHIP_SUMMARY.to_doc(), charged_cents=1310)
    got = rows(bank_receipt_for(sale, head(sale)))
    assert got["Charged"] == "13.10 EUR" and got["TOTAL"] == "13.10 EUR"


def test_bank_receipt_of_a_swiped_card_leaves_out_the_chip_lines(tmp_path: Path) -> None:
    swiped = BankSummary(entry_mode="901", preauth_cents=15000, response_code="00", auth_code="A1B2C3")
    sale = journaled_sale(tmp_path, swiped.to_doc())
    got = rows(bank_receipt_for(sale, head(sale)))
    assert (got["Entry"], got["Verification"], got["Pre-authorized"]) == ("Magstripe", "Online PIN",
                                                                          "120.00 EUR")
    assert not {"Application", "AID", "TVR", "TSI", "Pre-authorized (partial)"} & set(got)


# a damaged journal summary must print "-" on the receipt, not stop it
def test_bank_receipt_of_a_damaged_summary_prints_a_dash(tmp_path: Path) -> None:
    damaged = {**CHIP_SUMMARY.to_doc(), "cvm_results": "ZZZZZZ", "entry_mode": "07", "surplus": 1}
    sale = journaled_sale(tmp_path, damaged)
    got = rows(bank_receipt_for(sale, head(sale)))
    assert (got["Verification"], got["Entry"], got["Application"]) == ("-", "07", "VISA DEBIT")


def test_bank_receipt_without_a_summary_still_prints(tmp_path: Path) -> None:
    sale = journaled_sale(tmp_path, {})
    assert sale.data == {}
    got = rows(bank_receipt_for(sale, head(sale)))
    assert (got["Auth code"], got["Pre-authorized"], got["Charged"]) == ("A1B2C3", "120.00 EUR", "14.10 EUR")
    assert not {"Application", "AID", "Entry", "TVR"} & set(got)


def test_bank_receipt_of_a_summary_missing_its_entry_mode_still_prints(tmp_path: Path) -> None:
    sale = journaled_sale(tmp_path, {"aid": "A0000000031010", "app_label": "VISA DEBIT"})
    got = rows(bank_receipt_for(sale, head(sale)))
    assert (got["Application"], got["Charged"]) == ("VISA DEBIT", "14.10 EUR")


# -- a second acquirer is a second dialect (data), not new code ------------------------------------------


def test_the_acquirers_dialect_is_named_in_the_bank_configuration() -> None:
    from types import SimpleNamespace

    from contracts.errors import ConfigError
    from contracts.iso8583_spec import DIALECT, DIALECT_AES_PIN
    from firmware.programs.bank.setup import acquirer_dialect

    assert acquirer_dialect(SimpleNamespace()) is DIALECT
    assert acquirer_dialect(SimpleNamespace(dialect="afd-1987-aes-pin")) is DIALECT_AES_PIN
    with pytest.raises(ConfigError):
        acquirer_dialect(SimpleNamespace(dialect="acquirer-nobody-has"))


def test_the_cardholder_port_is_asked_for_the_dialects_pin_block() -> None:
    from contracts.iso8583_spec import DIALECT, DIALECT_AES_PIN
    from firmware.programs.bank.prompts import Prompts
    from tests.sale_fakes import ScriptedCardholder

    port = ScriptedCardholder(dukpt=[(bytes(12), bytes(8)), (bytes(12), bytes(16))])
    for dialect in (DIALECT, DIALECT_AES_PIN):
        prompts = Prompts(port, home="en", after_pin=lambda: None, keys_left=lambda: True,
                          pin_format=dialect.pin_block)
        prompts.online_pin(PAN)
    assert port.pin_formats == ["iso0-tdea2", "iso4-aes"]


def test_advices_of_another_dialect_are_built_and_forwarded_in_it(saf: StoreAndForward) -> None:
    from contracts.iso8583_spec import DIALECT_AES_PIN

    saf.hold("sale-t", context().dumps())
    kind, raw = build_final_advice(context(), terminal=TERMINAL, dispensed=4321, stan=43, when=WHEN,
                                   sold=SOLD, dialect=DIALECT_AES_PIN)
    saf.settle(kind, "sale-t", raw)
    host = AcquirerHost({}, dialect=DIALECT_AES_PIN).start()
    host.remember("000042", "0314092653", 12000)
    link = AcquirerLink("127.0.0.1", host.port, connect_timeout=1.0, response_timeout=1.0)
    forwarder = AdviceForwarder(saf, link, timeout=1.0, interval=0.05, dialect=DIALECT_AES_PIN)
    try:
        forwarder.start()
        forwarder.kick()
        assert wait_until(lambda: not saf.pending())
        assert host.settled_total == 4321 and host.decisions[-1]["code"] == "00"
    finally:
        forwarder.stop()
        link.close()
        host.stop()
