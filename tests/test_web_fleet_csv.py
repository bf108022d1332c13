"""registry.web.fleet_csv on a real SQLite registry: the 1C-style format (BOM, ';', CRLF, DD.MM.YYYY,
decimal comma), round trips, every bad row refused with its row number, nothing half-imported, and no card
number in an export or an error."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok
from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import admin
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import Account, AuditEntry, Card, Customer, Driver, Limit, Vehicle
from registry.web import fleet_csv
from registry.web.fleet_csv import CsvRejected

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
OPS = {"actor": "web:alice", "now": NOW}
pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)
PANS = ("7077001000000019", "7077001000000027", "7077001000000035", "7077001000000043")
BAD_LUHN = "7077001000000018"


def pan(n: int) -> str:
    """The n-th valid card number of the range 7077002..."""
    body = f"707700200000{n:03d}"
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@dataclass
class Db:
    s: Session
    keys: RegistryKeys
    account: int


def _open(path: Path) -> Iterator[Db]:
    path.mkdir()
    engine, sessions = open_database(f"sqlite:///{path / 'registry.db'}")
    keys = load_or_create_keys(path / "state" / "registry-keys.json")
    with sessions() as s:
        customer = admin.create_customer(s, "Hauler GmbH", tax_id="DE123456789", **OPS)
        account = admin.create_account(s, customer.id, "Trucks", **OPS)
        s.commit()
        yield Db(s, keys, account.id)
    engine.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    yield from _open(tmp_path / "a")


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Db]:
    yield from _open(tmp_path / "b")


def csv_file(*lines: str) -> bytes:
    return ("\ufeff" + "".join(line + "\r\n" for line in lines)).encode("utf-8")


def rows_of(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "\n" not in text.replace("\r\n", "")         # CRLF records
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def count(s: Session, model: type) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


def refused(call: object, *args: object, **kwargs: object) -> list[tuple[int, str]]:
    with pytest.raises(CsvRejected) as err:
        call(*args, **kwargs)          # type: ignore[operator]
    return [(e.row, e.column) for e in err.value.errors]


def test_customers_export_is_1c_csv_and_round_trips(db: Db, other: Db) -> None:
    s = db.s
    admin.create_customer(s, "ООО «Ромашка»; филиал", tax_id="7707083893", **OPS)
    admin.create_customer(s, '=HYPERLINK("http://x")', kind="individual", tax_id="-12", **OPS)
    admin.create_customer(s, 'Say "hi"', **OPS)
    s.commit()
    data = fleet_csv.export_customers(s)
    rows = rows_of(data)
    assert rows[0] == list(fleet_csv.CUSTOMER_COLUMNS)
    assert rows[1] == ["1", "Hauler GmbH", "company", "DE123456789", "01.12.2026", "1"]
    assert rows[2][1] == "ООО «Ромашка»; филиал"
    assert rows[3][1] == "'=HYPERLINK(\"http://x\")" and rows[3][3] == "'-12"     # no formula runs
    # into another registry, ids left out (they are this registry's): the same customers, the same file
    blank = b"\r\n".join(b";".join([b""] + line.split(b";")[1:]) if n else line
                          for n, line in enumerate(data.split(b"\r\n")) if line)
    with pytest.raises(CsvRejected, match="nothing was imported"):
        fleet_csv.import_customers(other.s, data, **OPS)             # ids 2..4 are not there
    new = fleet_csv.import_customers(other.s, blank, **OPS)
    other.s.commit()
    assert new.created == [2, 3, 4] and new.unchanged == 1           # Hauler GmbH is there by id 1
    again = rows_of(fleet_csv.export_customers(other.s))
    assert [r[:5] for r in again] == [r[:5] for r in rows]
    assert other.s.get(Customer, 3).name == '=HYPERLINK("http://x")'   # type: ignore[union-attr]


def test_reimport_changes_nothing_and_an_edit_is_audited(db: Db) -> None:
    s = db.s
    data = fleet_csv.export_customers(s)
    assert fleet_csv.import_customers(s, data, **OPS) == fleet_csv.Imported([], [], 1)
    # a 1C file without ids: a customer of that name and tax id is the same one
    plain = csv_file("Наименование;ИНН", "Hauler GmbH;DE123456789", "Neu AG;DE999")
    done = fleet_csv.import_customers(s, plain, **OPS)
    assert done.unchanged == 1 and len(done.created) == 1
    assert fleet_csv.import_customers(s, plain, **OPS).created == []
    edited = csv_file("id;name;kind;tax_id", "1;Hauler Logistics GmbH;company;DE123456789")
    assert fleet_csv.import_customers(s, edited, **OPS).updated == [1]
    s.commit()
    audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "customer.edit")).one()
    assert audit.subject == "customer:1" and audit.actor == "web:alice" and "Hauler Logistics" in audit.detail


def test_edit_customer_checks_its_input(db: Db) -> None:
    with pytest.raises(ConfigError, match="kind"):
        fleet_csv.edit_customer(db.s, 1, name="X", kind="alien", tax_id="", **OPS)
    with pytest.raises(ConfigError, match="name"):
        fleet_csv.edit_customer(db.s, 1, name="a\x07b", kind="company", tax_id="", **OPS)
    with pytest.raises(ConfigError, match="unknown customer"):
        fleet_csv.edit_customer(db.s, 99, name="X", kind="company", tax_id="", **OPS)
    aware = NOW.replace(tzinfo=dt.UTC)
    assert fleet_csv.edit_customer(db.s, 1, name="X", kind="individual", tax_id="", actor="a", now=aware)
    assert not fleet_csv.edit_customer(db.s, 1, name="X", kind="individual", tax_id="", actor="a", now=aware)


def test_bad_customer_rows_are_refused_by_row_and_nothing_lands(db: Db) -> None:
    s = db.s
    before = (count(s, Customer), count(s, AuditEntry))
    data = csv_file("name;kind;tax_id;id",
                    "Good One;company;1;",
                    "Bad Kind;alien;2;",
                    ";company;3;",
                    "",                                          # a blank line is read over
                    "Ghost;company;4;77",
                    "Hauler GmbH;company;5;1",
                    "Twice;company;6;1",
                    "Extra;company;7;;surplus",
                    "Also Good;individual;8;")
    assert refused(fleet_csv.import_customers, s, data, **OPS) == [
        (3, "kind"), (4, "name"), (6, "id"), (8, "id"), (9, "")]
    assert (count(s, Customer), count(s, AuditEntry)) == before
    s.commit()
    assert (count(s, Customer), count(s, AuditEntry)) == before


def test_a_file_that_is_not_the_format_is_refused(db: Db) -> None:
    s = db.s
    assert refused(fleet_csv.import_customers, s, csv_file("name;colour;Name"), **OPS) == [
        (1, "colour"), (1, "name")]
    assert refused(fleet_csv.import_customers, s, csv_file("id;kind"), **OPS) == [(1, "name")]
    trailing = csv_file("name;tax_id;;", "Epsilon;E5;;")                 # empty columns are read over
    assert len(fleet_csv.import_customers(s, trailing, **OPS).created) == 1
    s.rollback()
    assert refused(fleet_csv.import_customers, s, b"", **OPS) == [(1, "")]
    with pytest.raises(ConfigError, match="UTF-8"):
        fleet_csv.import_customers(s, "name\r\nМосква\r\n".encode("cp1251"), **OPS)
    with pytest.raises(ConfigError, match="larger"):
        fleet_csv.import_customers(s, b"name\r\n" + b"x" * fleet_csv.MAX_BYTES, **OPS)
    assert count(s, Customer) == 1


def cards_file(*rows: str) -> bytes:
    return csv_file("number;medium;status;expiry;account;vehicle;driver;day_limit_l;month_limit_money", *rows)


def test_cards_import_issues_sealed_cards_and_the_export_masks_them(db: Db) -> None:
    s, keys, acc = db.s, db.keys, db.account
    data = cards_file(f"{PANS[0]};chip;active;12/29;{acc};ab-12;0042;80,5;1 500,00",
                      f"{PANS[1]};;;01/2030;{acc};AB12;;;",
                      f"{PANS[2]};stripe;new;12/29;{acc};;0042;;")
    done = fleet_csv.import_cards(s, keys, data, **OPS)
    s.commit()
    assert len(done.created) == 3
    first, second, third = (s.get(Card, i) for i in done.created)
    assert first and second and third
    assert (first.status, first.medium, first.expiry) == ("active", "chip", "2912")
    assert first.masked == "707700******0019"
    assert (second.status, second.medium, second.expiry) == ("new", "chip", "3001")
    assert third.medium == "stripe" and first.pin_verifier == ""            # no PIN from a file
    assert first.token == keys.token(PANS[0]) and keys.open_number(first.number_sealed or "") == PANS[0]
    assert count(s, Vehicle) == 1 and count(s, Driver) == 1                 # "ab-12" and "AB12" are one
    assert first.vehicle_id == second.vehicle_id and first.driver_id == third.driver_id
    caps = {(x.period, x.unit): x.maximum for x in s.scalars(select(Limit).where(Limit.scope_id == first.id))}
    assert caps == {("day", "volume"): 8050, ("month", "money"): 150000}
    assert s.scalar(select(func.count()).where(AuditEntry.action == "card.issue")) == 3
    out = fleet_csv.export_cards(s)
    for pan in PANS:
        assert pan.encode() not in out and pan[6:12].encode() not in out
    rows = rows_of(out)
    assert rows[0] == list(fleet_csv.CARD_COLUMNS)
    assert rows[1] == [str(first.id), "707700******0019", "chip", "active", "12/29", str(acc), "1", "AB12",
                       "0042", "80,50", "", "", "1500,00", "01.12.2026", ""]
    assert fleet_csv.export_cards(s, account_id=acc + 1).count(b"\r\n") == 1    # the header only


def test_cards_round_trip_but_for_the_number(db: Db, other: Db) -> None:
    source = cards_file(f"{PANS[0]};tag;active;12/29;{db.account};X1;7;;",
                        f"{PANS[1]};stripe;new;06/28;{db.account};;;10,00;99,99")
    source = source.replace(PANS[0].encode(), b"04A1B2C3D4E5F6")
    fleet_csv.import_cards(db.s, db.keys, source, **OPS)
    exported = rows_of(fleet_csv.export_cards(db.s))
    columns = exported[0]
    header, *lines = rows_of(source)
    wanted = [c for c in header if c != "number"]
    shown = [{c: r[columns.index(c)] for c in wanted} for r in exported[1:]]
    given = [{c: r[header.index(c)] for c in wanted} for r in lines]
    assert shown == given
    assert [r[1] for r in exported[1:]] == ["U**********E5F6", "707700******0027"]
    # what the export says is what a second registry makes of the same file
    fleet_csv.import_cards(other.s, other.keys, source, **OPS)
    assert rows_of(fleet_csv.export_cards(other.s)) == exported


def test_bad_card_rows_are_refused_by_row_without_their_numbers(db: Db) -> None:
    s, keys, acc = db.s, db.keys, db.account
    fleet_csv.import_cards(s, keys, cards_file(f"{PANS[3]};chip;new;12/29;{acc};;;;"), **OPS)
    s.commit()
    loyalty = Account(name="Points", kind="loyalty", status="active", timezone="UTC")
    s.add(loyalty)
    s.commit()
    before = tuple(count(s, m) for m in (Card, Vehicle, Driver, Limit, AuditEntry))
    data = cards_file(f"{PANS[0]};chip;new;12/29;{acc};NEW1;99;;",          # fine, but the file is refused
                      f"{BAD_LUHN};chip;new;12/29;{acc};;;;",
                      f"{PANS[0]};chip;new;12/29;{acc};;;;",
                      f"{PANS[3]};chip;new;12/29;{acc};;;;",
                      f"{pan(1)};chip;new;13/29;{acc};;;;",
                      f"{pan(2)};chip;new;01/20;{acc};;;;",
                      f"{pan(3)};chip;new;12/29;999;;;;",
                      f"{pan(4)};chip;new;12/29;{loyalty.id};;;;",
                      f"{pan(5)};disc;new;12/29;{acc};;;;",
                      f"{pan(6)};chip;lost;12/29;{acc};;;;",
                      f"{pan(7)};chip;new;12/29;{acc};;;8.5;",
                      f"{pan(8)};chip;new;12/29;{acc};A-B C!;;;",
                      f"{pan(9)};chip;new;12/29;{acc};;x9;;")
    with pytest.raises(CsvRejected) as err:
        fleet_csv.import_cards(s, keys, data, **OPS)
    assert [(e.row, e.column) for e in err.value.errors] == [
        (3, "number"), (4, "number"), (5, "number"), (6, "expiry"), (7, "expiry"), (8, "account"),
        (9, "account"), (10, "medium"), (11, "status"), (12, "day_limit_l"), (13, "vehicle"), (14, "driver")]
    assert "row 2" in err.value.errors[1].message and "issued already" in err.value.errors[2].message
    shown = str(err.value) + "".join(e.message for e in err.value.errors)
    numbers = (*PANS, BAD_LUHN, *(pan(n) for n in range(1, 10)))
    assert not any(number[-10:] in shown for number in numbers)
    assert tuple(count(s, m) for m in (Card, Vehicle, Driver, Limit, AuditEntry)) == before
    s.commit()
    assert tuple(count(s, m) for m in (Card, Vehicle, Driver, Limit, AuditEntry)) == before


def test_cards_import_takes_russian_headers_and_refuses_a_pin_column(db: Db) -> None:
    s = db.s
    ru = csv_file("Номер карты;Срок действия;Счёт;Статус", f"{PANS[0]};12/29;{db.account};active")
    assert len(fleet_csv.import_cards(s, db.keys, ru, **OPS).created) == 1
    with_pin = csv_file("number;expiry;account;pin", f"{PANS[1]};12/29;{db.account};1234")
    assert refused(fleet_csv.import_cards, s, db.keys, with_pin, **OPS) == [(1, "pin")]


@pytest.mark.system
def test_all_or_nothing_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The savepoints of an import on PostgreSQL: a refused file leaves nothing, a good one lands whole."""
    engine, sessions = open_database(pg_url)
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    try:
        with sessions() as s:
            customer = admin.create_customer(s, "PG Haulage", **OPS)
            acc = admin.create_account(s, customer.id, "PG trucks", **OPS).id
            s.commit()
            before = tuple(count(s, m) for m in (Card, Vehicle, Limit, AuditEntry))
            bad = cards_file(f"{pan(20)};chip;new;12/29;{acc};PG1;;10,00;",
                             f"{BAD_LUHN};chip;new;12/29;{acc};;;;")
            assert refused(fleet_csv.import_cards, s, keys, bad, **OPS) == [(3, "number")]
            s.commit()
            assert tuple(count(s, m) for m in (Card, Vehicle, Limit, AuditEntry)) == before
            good = cards_file(f"{pan(20)};chip;new;12/29;{acc};PG1;;10,00;", f"DEADBEEF;tag;;12/29;{acc};;;;")
            assert len(fleet_csv.import_cards(s, keys, good, **OPS).created) == 2
            s.commit()
            assert count(s, Card) == before[0] + 2 and count(s, Vehicle) == before[1] + 1
    finally:
        engine.dispose()
