"""registry.purse.records on a real SQLite registry (real migrations, real keys and MACs): each check of
docs/chip-wallets.md in order, the flags stored and queryable, debits posted once, and the shadow that is
the ledger. The builders here (World, ToyCard) serve tests/test_purse_loads.py and the PostgreSQL module."""

from __future__ import annotations

import datetime as dt
import os
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from test_usbbundle import CREATED, make_kit
from test_usbbundle import NOW as USB_TIME
from test_usbbundle import sale as usb_sale

from contracts import messages as m
from contracts.errors import MessageError
from contracts.purse_keys import Purpose, Unit, init_load_message, mac
from contracts.purse_messages import (
    LOAD_GRANT,
    PURSE_RECORDS,
    PURSE_RECORDS_KIND,
    SCRIPTS_REQUEST,
    decode,
    encode,
)
from contracts.purse_records import Kind, PurchaseRecord, sign
from contracts.usbbundle import UsbBundleError, decode_sales_bundle, encode_sales_bundle, open_sales
from registry.db import open_database
from registry.fleet import cards, ledger
from registry.keys import RegistryKeys
from registry.models import Account, Card, Customer, Device, Movement, Station, Wallet
from registry.pki import fingerprint
from registry.purse.bundle import import_purse_records, ingest_upload
from registry.purse.issuer import IssuerKeys
from registry.purse.loads import LoadRequest
from registry.purse.purses import PurseError, flags, purse_by_id, register_purse, register_sam
from registry.purse.records import Item, ingest
from registry.purse.topups import load_id_for, order_topup
from registry.purse_models import PurseRecord, PurseSam

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
PURSE = bytes.fromhex("7077000000000019")
SAM = bytes.fromhex("5341000000000001")
USB_NOW = USB_TIME.replace(tzinfo=None)
FUNDS = 100_000           # cents on the account's own money wallet
START = {0: 10_000, 1: 20_000}   # what the chip wallets hold at personalisation (a transfer from the account)


def at(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.UTC).timestamp())


@dataclass
class ToyCard:
    """What the purse on the chip does, enough to make genuine records (hostsim has the real applet)."""

    issuer: IssuerKeys
    purse_id: bytes = PURSE
    counter: int = 0
    balances: dict[int, int] = field(default_factory=lambda: dict(START))
    units: dict[int, Unit] = field(default_factory=lambda: {0: Unit.MONEY, 1: Unit.VOLUME})
    version: int = 1
    # the registry's top-up order for a load (World.order): its load id at the card's counter
    order: Callable[[int, int, int], bytes | None] | None = None

    def _record(self, kind: Kind, wallet: int, amount: int, when: dt.datetime) -> bytes:
        self.counter += 1
        before = self.balances[wallet]
        after = before + amount if kind is Kind.LOAD else before - amount
        self.balances[wallet] = after
        record = PurchaseRecord(key_version=self.version, kind=kind, card_id=self.purse_id, wallet=wallet,
                                counter=self.counter, amount=amount, unit=self.units[wallet],
                                product=0 if kind is Kind.LOAD else 19, terminal=SAM, time=at(when),
                                previous_balance=before, new_balance=after)
        return sign(self.issuer.card_key(self.purse_id, Purpose.RECORD, self.version), record)

    def purchase(self, wallet: int, amount: int, *, when: dt.datetime = NOW,
                 kind: Kind = Kind.PURCHASE) -> bytes:
        return self._record(kind, wallet, amount, when)

    def load_request(self, wallet: int, amount: int, load_id: bytes | None = None) -> LoadRequest:
        unit, balance = self.units.get(wallet, Unit.MONEY), self.balances.get(wallet, 0)
        message = init_load_message(self.purse_id, key_version=1, wallet=wallet, counter=self.counter,
                                    amount=amount, unit=unit, balance=balance)
        tag = mac(self.issuer.card_key(self.purse_id, Purpose.AUTH, 1), message)
        if load_id is None and self.order is not None:
            load_id = self.order(wallet, amount, self.counter)     # an operator ordered it first
        return LoadRequest(load_id=load_id or os.urandom(16), purse_id=self.purse_id, wallet=wallet,
                           counter=self.counter, amount=amount, unit=unit, balance=balance, key_version=1,
                           mac=tag, terminal="T-0001")

    def apply_load(self, wallet: int, amount: int) -> bytes:
        """After the load MAC checked: credit, advance the counter, the LOAD record."""
        return self._record(Kind.LOAD, wallet, amount, NOW)


class World:
    """A registry with one account: its own money wallet (funded) and volume wallet, and a card whose purse
    has chip wallet 0 (money) and 1 (volume), and a SAM."""

    def __init__(self, sm: sessionmaker[Session], keys: RegistryKeys | None = None,
                 purse_id: bytes = PURSE) -> None:
        self.sm, self.purse_id = sm, purse_id
        self.keys = keys or RegistryKeys(card_key=os.urandom(32), pin_key=os.urandom(32), kek=os.urandom(32))
        with sm() as s:
            customer = Customer(name="Acme", kind="company", created_at=NOW)
            s.add(customer)
            s.flush()
            account = Account(name="Acme fleet", customer_id=customer.id)
            s.add(account)
            s.flush()
            made = [Wallet(account_id=account.id, allowed_products="", unit=u, name=n)
                    for u, n in (("money", "funds"), ("volume", "litres"), ("money", "chip 0"),
                                 ("volume", "chip 1"))]
            s.add_all(made)
            s.flush()
            self.account_id = account.id
            self.funds, self.litres, self.chip0, self.chip1 = (w.id for w in made)
            card = Card(token=uuid.uuid4().hex, masked="707700******0019", account_id=account.id,
                        expiry="2912", pin_verifier="", status="active", status_changed_at=NOW)
            s.add(card)
            s.flush()
            self.card_id = card.id
            ledger.topup(s, made[0], FUNDS, key=f"seed:funds:{purse_id.hex()}", at=NOW, actor="test")
            ledger.topup(s, made[1], 50_000, key=f"seed:litres:{purse_id.hex()}", at=NOW, actor="test")
            for source, chip, number in ((made[0], made[2], 0), (made[1], made[3], 1)):
                ledger.transfer(s, source, chip, START[number], key=f"seed:chip{number}:{purse_id.hex()}",
                                at=NOW, actor="test")
            register_purse(s, card.id, purse_id, {0: self.chip0, 1: self.chip1}, now=NOW)
            if s.get(PurseSam, SAM.hex()) is None:
                register_sam(s, SAM, "T-0001", now=NOW)
            self.issuer = IssuerKeys.load(s, self.keys, now=NOW)
            s.commit()
        self.card = ToyCard(self.issuer, purse_id=purse_id, order=self.order)

    def order(self, wallet: int, amount: int, counter: int) -> bytes | None:
        """A top-up order for the card's next contact; its load id at `counter` (None: no such wallet)."""
        with self.sm() as s:
            purse = purse_by_id(s, self.purse_id)
            try:
                row = order_topup(s, self.purse_id, wallet, amount, actor="test", now=NOW)
            except PurseError:
                return None
            s.commit()
            assert purse is not None
            return load_id_for(purse, row, counter)

    def sam_item(self, record: bytes, seq: int) -> Item:
        key = self.issuer.sam_key(SAM, 1)
        return Item(record, SAM, seq, mac(key, record + struct.pack(">I", seq)))

    def ingest(self, *records: bytes | Item, source: str = "mqtt:T-0001") -> dict[str, int]:
        items = [r if isinstance(r, Item) else Item(r) for r in records]
        with self.sm() as s:
            report = ingest(s, self.issuer, items, source=source, now=NOW)
            s.commit()
        return {"counted": report.counted, "duplicate": report.duplicate, "stored": report.stored,
                **report.flags}

    def balance(self, wallet_id: int) -> int:
        with self.sm() as s:
            wallet = s.get(Wallet, wallet_id)
            return wallet.balance if wallet is not None else -1

    def flag_names(self) -> list[str]:
        with self.sm() as s:
            return [f.flag for f in flags(s, self.purse_id)]

    def sound(self) -> None:
        """Every wallet's balance is the sum of its movements."""
        with self.sm() as s:
            assert ledger.check(s) == []


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    yield made
    engine.dispose()


@pytest.fixture
def world(sm: sessionmaker[Session]) -> World:
    return World(sm)


def test_a_genuine_debit_counts_once_on_the_shadow(world: World) -> None:
    record = world.card.purchase(0, 3318)
    assert world.ingest(record) == {"counted": 1, "duplicate": 0, "stored": 1}
    assert world.ingest(record) == {"counted": 0, "duplicate": 1, "stored": 0}
    with world.sm() as s:
        moved = s.scalars(select(Movement).where(Movement.key == f"purse:{PURSE.hex()}:1")).one()
        assert moved.kind == "chip_sale" and moved.wallet_id == world.chip0 and moved.amount == -3318
    assert world.balance(world.chip0) == START[0] - 3318 == world.card.balances[0]
    world.sound()


def test_malformed_and_bad_signature_are_stored_flagged_and_not_counted(world: World) -> None:
    good = world.card.purchase(0, 0)
    tampered = good[:22] + b"\x00\x02" + good[24:]            # another product
    assert world.ingest(b"\x50" * 10, tampered) == {"counted": 0, "duplicate": 0, "stored": 2, "malformed": 1,
                                                    "bad_signature": 1}
    with world.sm() as s:
        assert s.scalar(select(func.count()).select_from(PurseRecord)) == 2
        assert [f.flag for f in flags(s)] == ["malformed", "bad_signature"]
    assert world.balance(world.chip0) == START[0]


def test_a_different_record_for_a_counted_counter_is_a_replay(world: World) -> None:
    first = world.card.purchase(0, 0)
    world.card.counter -= 1
    other = world.card.purchase(0, 0, when=NOW + dt.timedelta(seconds=5))
    assert world.ingest(first)["counted"] == 1
    assert world.ingest(other) == {"counted": 0, "duplicate": 0, "stored": 1, "replay": 1}
    assert world.flag_names() == ["replay"]


def test_a_counter_gap_and_a_balance_off_the_shadow_are_flagged_but_counted(world: World) -> None:
    world.card.purchase(0, 1000)                           # counter 1 never reaches the registry
    second = world.card.purchase(0, 200)
    assert world.ingest(second) == {"counted": 1, "duplicate": 0, "stored": 1, "counter_gap": 1}
    with world.sm() as s:
        assert [f.detail for f in flags(s, PURSE)] == ["1 counters missing before 2"]
    world.card.balances[0] += 50                           # a balance the shadow does not have
    third = world.card.purchase(0, 100)                    # in sequence: previous 8850, shadow 9800
    assert world.ingest(third)["balance_mismatch"] == 1
    assert world.balance(world.chip0) == START[0] - 300
    world.sound()


def test_a_card_on_the_stop_list_used_offline_is_flagged(world: World) -> None:
    with world.sm() as s:
        cards.move(s, world.card_id, "lost", actor="ops", reason="reported lost",
                   now=NOW - dt.timedelta(hours=1))
        s.commit()
    assert world.ingest(world.card.purchase(0, 0))["stop_listed_offline"] == 1
    with world.sm() as s:
        card = s.get(Card, world.card_id)
        assert card is not None and card.status == "lost"


def test_a_use_before_the_card_was_blocked_is_not_flagged(world: World) -> None:
    record = world.card.purchase(0, 0, when=NOW - dt.timedelta(hours=2))
    with world.sm() as s:
        cards.move(s, world.card_id, "block", actor="ops", reason="fraud", now=NOW - dt.timedelta(hours=1))
        s.commit()
    assert "stop_listed_offline" not in world.ingest(record)


def test_a_use_while_the_card_was_blocked_is_flagged_after_it_is_unblocked(world: World) -> None:
    hour = dt.timedelta(hours=1)
    during, after = world.card.purchase(0, 10, when=NOW - hour), world.card.purchase(0, 10, when=NOW + hour)
    with world.sm() as s:
        cards.move(s, world.card_id, "temp_block", actor="ops", reason="check", now=NOW - 2 * hour)
        cards.move(s, world.card_id, "unblock", actor="ops", reason="fine", now=NOW)
        s.commit()
    assert world.ingest(during)["stop_listed_offline"] == 1
    assert "stop_listed_offline" not in world.ingest(after)
    with world.sm() as s:
        assert [f.detail for f in flags(s, world.purse_id)] == ["card temp_blocked"]


def test_unknown_purse_counts_nothing(world: World) -> None:
    stranger = ToyCard(world.issuer, purse_id=bytes.fromhex("7077000000000099"))
    assert world.ingest(stranger.purchase(0, 0)) == {"counted": 0, "duplicate": 0, "stored": 1,
                                                     "unknown_purse": 1}


def test_sam_mac_and_sequence_are_checked_but_the_card_signed_debit_counts(world: World) -> None:
    first, second, third = (world.card.purchase(0, 0) for _ in range(3))
    assert world.ingest(world.sam_item(first, 1))["counted"] == 1
    bad = world.sam_item(second, 2)
    bad = Item(bad.record, bad.sam_id, bad.sam_seq, bytes(16))
    assert world.ingest(bad) == {"counted": 1, "duplicate": 0, "stored": 1, "sam_mac_bad": 1}
    assert world.ingest(world.sam_item(third, 5))["sam_seq_gap"] == 1
    assert world.flag_names() == ["sam_mac_bad", "sam_seq_gap"]


def test_an_unknown_or_revoked_sam_is_flagged(world: World) -> None:
    first, second = world.card.purchase(0, 10), world.card.purchase(0, 10)
    stranger = Item(first, bytes.fromhex("5341000000000099"), 1, bytes(16))
    assert world.ingest(stranger)["sam_unknown"] == 1
    with world.sm() as s:
        sam = s.get(PurseSam, SAM.hex())
        assert sam is not None
        sam.status = "revoked"
        s.commit()
    assert world.ingest(world.sam_item(second, 1))["sam_unknown"] == 1
    assert world.balance(world.chip0) == world.card.balances[0]     # both card-signed debits counted


def test_a_retired_record_key_is_flagged(world: World) -> None:
    with world.sm() as s:
        issuer = IssuerKeys.load(s, world.keys, now=NOW)
        issuer.rotate(s, Purpose.RECORD, now=NOW)
        issuer.retire(s, Purpose.RECORD, 1, now=NOW)
        s.commit()
    with world.sm() as s:
        world.issuer = IssuerKeys.load(s, world.keys, now=NOW)
    world.card.issuer = world.issuer
    assert world.ingest(world.card.purchase(0, 0))["retired_key"] == 1


def test_records_out_of_order_count_each_once(world: World) -> None:
    records = [world.card.purchase(1, 100) for _ in range(5)]
    world.ingest(records[4], records[1])
    world.ingest(*records)
    assert world.balance(world.chip1) == START[1] - 500 == world.card.balances[1]
    with world.sm() as s:
        assert s.scalar(select(func.count()).select_from(PurseRecord).where(PurseRecord.counted)) == 5
    world.sound()


# --- over MQTT and on a flash-drive bundle ----------------------------------------------------------------

def upload(w: World, records: list[bytes], first_seq: int = 1) -> bytes:
    """The PURSE_RECORDS payload a terminal sends (or writes into a bundle), SAM-MACed."""
    items = []
    for n, record in enumerate(records):
        item = w.sam_item(record, first_seq + n)
        items.append({"record": record.hex(), "sam_seq": item.sam_seq,
                      "sam_mac": (item.sam_mac or b"").hex()})
    doc = {"kind": PURSE_RECORDS_KIND, "terminal": "T-0001", "sam_id": SAM.hex(), "items": items}
    return encode(doc, PURSE_RECORDS)


def test_an_mqtt_upload_counts_each_record_once(world: World) -> None:
    records = [world.card.purchase(0, 250) for _ in range(3)]
    with world.sm() as s:
        report = ingest_upload(s, world.issuer, decode(upload(world, records), PURSE_RECORDS), now=NOW)
        again = ingest_upload(s, world.issuer, decode(upload(world, records), PURSE_RECORDS), now=NOW)
        s.commit()
    assert (report.counted, report.flags, again.counted, again.duplicate) == (3, {}, 0, 3)
    with world.sm() as s:
        assert {r.source for r in s.scalars(select(PurseRecord))} == {"mqtt:T-0001"}
    assert world.balance(world.chip0) == world.card.balances[0]


def test_a_bundle_imported_twice_counts_once(world: World, tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "pki")
    with world.sm() as s:
        s.add(Station(id="ST-001", name="Main street"))
        s.flush()
        s.add(Device(id="T-0001", station_id="ST-001", pin_key_hex="00" * 16, status="active",
                     cert_fingerprint=fingerprint(kit.cert_pem)))
        s.commit()
    records = [world.card.purchase(1, 1000) for _ in range(4)]
    world.ingest(records[0])                                           # one came by MQTT already
    lines = [upload(world, records), encode(usb_sale(), m.SALE)]
    raw = encode_sales_bundle(lines, terminal="T-0001", created_at=CREATED, certificate_pem=kit.cert_pem,
                              device_key=kit.device_key, registry_key=kit.registry_key.public_key())
    assert len(open_sales(decode_sales_bundle(raw), kit.registry_key)) == 1     # the sale reader skips them
    for expected in ((3, 1), (0, 4)):
        with world.sm() as s:
            report = import_purse_records(s, raw, issuer=world.issuer, bundle_key=kit.registry_key,
                                          ca_pem=kit.ca.ca_pem, now=USB_NOW)
            s.commit()
        assert (report.counted, report.duplicate) == expected
    assert world.balance(world.chip1) == world.card.balances[1] == START[1] - 4000
    with world.sm() as s:
        assert len({r.source for r in s.scalars(select(PurseRecord))}) == 2
        forged = raw.replace(b'"terminal":"T-0001"', b'"terminal":"T-0002"', 1)
        with pytest.raises(UsbBundleError):
            import_purse_records(s, forged, issuer=world.issuer, bundle_key=kit.registry_key,
                                 ca_pem=kit.ca.ca_pem, now=USB_NOW)
    world.sound()


def test_purse_payloads_are_validated() -> None:
    grant = {"load_id": "00" * 16, "granted": False, "reason": "insufficient_funds", "mac": "",
             "key_version": 0, "counter": 7}
    assert decode(encode(grant, LOAD_GRANT), LOAD_GRANT) == grant
    with pytest.raises(MessageError):
        encode({**grant, "mac": "zz"}, LOAD_GRANT)
    request = {"request_id": str(uuid.uuid4()), "terminal": "T-0001", "purse_id": PURSE.hex(), "counter": 3,
               "blocked": False}
    assert decode(encode(request, SCRIPTS_REQUEST), SCRIPTS_REQUEST)["counter"] == 3
    with pytest.raises(MessageError):
        decode(b'{"v":1,"kind":"purse_records","terminal":"T-0001","sam_id":"00","items":[]}', PURSE_RECORDS)
    half = {"kind": PURSE_RECORDS_KIND, "terminal": "T-1", "sam_id": SAM.hex(),
            "items": [{"record": "50" * 60, "sam_seq": 1}]}          # a sequence without its MAC
    with pytest.raises(MessageError):
        encode(half, PURSE_RECORDS)


def test_a_record_from_the_cards_log_then_from_its_own_terminal_records_the_sam_sequence(
        world: World) -> None:
    first, second = world.card.purchase(0, 100), world.card.purchase(0, 100)
    assert world.ingest(first, source="mqtt:T-0002")["counted"] == 1      # the card's log, no SAM MAC
    forged = Item(first, SAM, 1, bytes(16))
    assert world.ingest(forged) == {"counted": 0, "duplicate": 1, "stored": 0, "sam_mac_bad": 1}
    assert world.ingest(world.sam_item(first, 1)) == {"counted": 0, "duplicate": 1, "stored": 0}
    assert world.ingest(world.sam_item(first, 1)) == {"counted": 0, "duplicate": 1, "stored": 0}
    assert world.ingest(world.sam_item(second, 2)) == {"counted": 1, "duplicate": 0, "stored": 1}
    assert world.flag_names() == ["sam_mac_bad"]
    assert world.balance(world.chip0) == START[0] - 200
    with world.sm() as s:
        sam = s.get(PurseSam, SAM.hex())
        assert sam is not None and sam.last_seq == 2
        row = s.scalars(select(PurseRecord).where(PurseRecord.counter == 1)).one()
        assert (row.sam_seq, row.source) == (1, "mqtt:T-0002")
