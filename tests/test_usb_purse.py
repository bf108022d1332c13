"""Chip purse records on the flash drive (issue 18): the terminal's purse outbox rides in its sales bundle
(firmware.usbexport), and the registry operator's `forecourt usb import-sales` counts them once on the chip
wallet's shadow (forecourtcli.usb.import_bundle, registry.purse.bundle). Real journal, real SQLite registry,
real card-signed records and SAM MACs, real bundle crypto."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_purse_ingest import NOW, SAM, START, World, at
from test_usb_exchange import bank_sale
from test_usbbundle import NOW as USB_TIME
from test_usbbundle import Kit, make_kit

import firmware.usbexport
from contracts.purse_keys import Purpose, Unit
from contracts.purse_messages import PURSE_RECORDS, decode, is_purse_line
from contracts.purse_records import Kind, PurchaseRecord, sign
from contracts.usbbundle import UsbBundleError, decode_sales_bundle, open_lines
from firmware.programs.purse.book import PurseBook
from firmware.sale.journal import Journal
from firmware.usbexport import Export, export_sales, purse_payloads
from forecourtcli.usb import BundleImport, import_bundle
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import Device, Station
from registry.pki import fingerprint
from registry.usbimport import load_or_create_bundle_key

MADE = USB_TIME.replace(tzinfo=None)       # when the stick is written and read: the device certificate's time


@dataclass
class Site:
    """A registry (state dir, CA, SQLite with a registered purse and SAM) and a terminal journal."""

    world: World
    kit: Kit
    state: Path
    db: str
    bundle_key: ec.EllipticCurvePrivateKey
    journal: Journal
    book: PurseBook

    def export(self) -> Export:
        return export_sales(self.journal, terminal="T-0001", station="ST-001", device_key=self.kit.device_key,
                            certificate_pem=self.kit.cert_pem, registry=self.bundle_key.public_key(),
                            now=MADE)

    def imported(self, raw: bytes) -> BundleImport:
        return import_bundle(self.db, self.state, raw, ca_pem=self.kit.ca.ca_pem, keys=self.world.keys,
                             now=MADE)

    def card_record(self, amount: int, seq: int | None) -> bytes:
        """The card debits its money wallet; the terminal journals the record (SAM-MACed when seq is set)."""
        record = self.world.card.purchase(0, amount)
        if seq is None:
            self.book.queue(record)
        else:
            item = self.world.sam_item(record, seq)
            self.book.queue(record, item.sam_seq, item.sam_mac)
        return record


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    state = tmp_path / "registry"
    keys = load_or_create_keys(state / "registry-keys.json")
    bundle_key = load_or_create_bundle_key(state)
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    engine, sm = open_database(db)
    world = World(sm, keys)
    kit = make_kit(tmp_path / "tls")
    with sm() as s:
        s.add(Station(id="ST-001", name="Main street"))
        s.flush()
        s.add(Device(id="T-0001", station_id="ST-001", pin_key_hex="00" * 16, status="active",
                     cert_fingerprint=fingerprint(kit.cert_pem)))
        s.commit()
    journal = Journal(tmp_path / "terminal" / "journal.db")
    try:
        yield Site(world, kit, state, db, bundle_key, journal, PurseBook(journal))
    finally:
        journal.close()
        engine.dispose()


def lines_of(site: Site, raw: bytes) -> list[dict[str, object]]:
    lines = open_lines(decode_sales_bundle(raw), site.bundle_key)
    return [decode(line, PURSE_RECORDS) for line in lines if is_purse_line(line)]


def test_a_purse_record_on_the_stick_moves_the_shadow_once(site: Site) -> None:
    bank_sale(site.journal)
    record = site.card_record(3318, seq=1)
    out = site.export()
    assert (out.count, out.records, out.skipped) == (1, 1, 0)           # count stays the sales count
    [doc] = lines_of(site, out.data)
    assert doc["terminal"] == "T-0001" and doc["sam_id"] == SAM.hex()
    assert doc["items"] == [{"record": record.hex(), "sam_seq": 1, "sam_mac": doc["items"][0]["sam_mac"]}]
    assert len(site.book.outgoing()) == 1                               # exporting marks nothing

    first = site.imported(out.data)
    assert first.purse is not None and (first.records, first.purse.counted, first.purse.flags) == (1, 1, {})
    assert first.purse_summary() == "1 chip purse records, 1 counted (stored 1, already received 0)"
    assert "1 sales, 1 new" in first.sales.summary()              # the record line is not a sale
    assert site.world.balance(site.world.chip0) == START[0] - 3318 == site.world.card.balances[0]

    again = site.imported(out.data)
    assert again.purse is not None and (again.purse.counted, again.purse.duplicate) == (0, 1)
    assert again.purse_summary().startswith("1 chip purse records, nothing new")
    assert "nothing new" in again.sales.summary()
    assert site.world.balance(site.world.chip0) == START[0] - 3318
    site.world.sound()


def test_a_later_export_carries_the_old_records_again_and_counts_only_the_new(site: Site) -> None:
    site.card_record(100, seq=1)
    assert site.imported(site.export().data).purse_summary().startswith("1 chip purse records, 1 counted")
    site.card_record(200, seq=None)                   # a record the SAM gave no MAC for travels bare
    out = site.export()
    assert out.records == 2 and [len(d["items"]) for d in lines_of(site, out.data)] == [2]  # type: ignore[arg-type]
    got = site.imported(out.data)
    assert got.purse is not None and (got.purse.counted, got.purse.duplicate) == (1, 1)
    assert site.world.balance(site.world.chip0) == START[0] - 300


def test_a_tampered_bundle_is_refused_and_counts_nothing(site: Site) -> None:
    site.card_record(500, seq=1)
    doc = json.loads(site.export().data)
    body = bytearray(base64.b64decode(doc["payload"]))
    body[-20] ^= 1
    doc["payload"] = base64.b64encode(bytes(body)).decode()
    with pytest.raises(UsbBundleError) as err:
        site.imported(json.dumps(doc).encode())
    assert err.value.reason == "bad_signature"
    assert site.world.balance(site.world.chip0) == START[0]


def test_a_bundle_without_records_says_so(site: Site) -> None:
    bank_sale(site.journal)
    got = site.imported(site.export().data)
    assert (got.records, got.purse, got.purse_failed) == (0, None, False)
    assert got.purse_summary() == "no chip purse records in the bundle"


def other_sam_record(site: Site, sam: bytes) -> bytes:
    """A record the card signed at another terminal's SAM (its log forwarded here)."""
    card = site.world.card
    card.counter += 1
    before = card.balances[0]
    card.balances[0] = before - 10
    record = PurchaseRecord(key_version=1, kind=Kind.PURCHASE, card_id=card.purse_id, wallet=0,
                            counter=card.counter, amount=10, unit=Unit.MONEY, product=19, terminal=sam,
                            time=at(NOW), previous_balance=before, new_balance=before - 10)
    return sign(card.issuer.card_key(card.purse_id, Purpose.RECORD, 1), record)


def test_records_are_grouped_by_sam_and_split_at_the_item_limit(site: Site,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firmware.usbexport, "MAX_ITEMS", 2)
    other = bytes.fromhex("5341000000000002")
    for seq in range(1, 4):
        site.card_record(10, seq=seq)
    site.book.queue(other_sam_record(site, other))
    payloads, count, skipped = purse_payloads(site.journal, "T-0001")
    docs = [decode(p, PURSE_RECORDS) for p in payloads]
    assert (count, skipped) == (4, 0)
    assert sorted((d["sam_id"], len(d["items"])) for d in docs) == [
        (SAM.hex(), 1), (SAM.hex(), 2), (other.hex(), 1)]


def test_a_record_that_does_not_encode_is_left_out_and_counted(site: Site) -> None:
    site.book.queue(site.world.card.purchase(0, 10), 2**32, bytes(16))    # a SAM sequence past 32 bits
    site.card_record(20, seq=1)
    payloads, count, skipped = purse_payloads(site.journal, "T-0001")
    assert (len(payloads), count, skipped) == (1, 1, 1)
    assert site.export().skipped == 1


def test_the_command_line_prints_both_counts(site: Site, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import main

    site.card_record(700, seq=1)
    stick = tmp_path / "sales.fcb"
    stick.write_bytes(site.export().data)
    args = ["usb", "import-sales", "--db", site.db, "--state-dir", str(site.state), "--tls-dir",
            str(site.kit.ca.directory), str(stick)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 sales, nothing new" in out and "1 chip purse records, 1 counted" in out
    assert main(args) == 0
    assert "1 chip purse records, nothing new (stored 0, already received 1)" in capsys.readouterr().out
    assert site.world.balance(site.world.chip0) == START[0] - 700
    stick.write_bytes(stick.read_bytes()[:-40])
    assert main(args) == 1 and "reason=malformed" in capsys.readouterr().err
    assert site.world.balance(site.world.chip0) == START[0] - 700

