"""registry.reports on SQLite rows made here, and `forecourt registry report` / `device command` as run."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from forecourtcli.main import EXIT_USAGE, main
from registry import reports
from registry.db import open_database
from registry.models import Base, Device, DeviceCommand, Station, Transaction
from registry.reports import Table

NOW = dt.datetime(2026, 6, 1, 12, 0)
DB = tuple[str, sessionmaker[Session]]


pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    """The same rows on SQLite and on a PostgreSQL started for this module (the gaps query is SQL)."""
    url = pg_env.database_url(request, tmp_path)
    engine, sessions = open_database(url)
    if request.param == "postgresql":
        Base.metadata.drop_all(engine)           # every test starts from its own rows alone
        Base.metadata.create_all(engine)
    with sessions() as s:
        s.add(Station(id="ST-001", name="North", currency="EUR"))
        s.commit()
        s.add_all([
            _device("T-0001", online=True, sw="1.4.2", cfg=7, expires=NOW + dt.timedelta(days=10),
                    backlog=4, oldest=300),
            _device("T-0002", online=False, sw="1.4.2", cfg=6, expires=NOW + dt.timedelta(days=45),
                    want_cfg=7),
            _device("T-0003", online=True, sw="1.5.0", cfg=7, expires=NOW + dt.timedelta(days=80)),
            _device("T-0004", online=False, sw=None, cfg=None, expires=NOW - dt.timedelta(days=2),
                    status="pending"),
            _device("T-0005", online=True, sw="1.4.2", cfg=7, expires=NOW + dt.timedelta(days=1),
                    status="revoked"),                  # history: in no report
        ])
        s.commit()
        # T-0001 sent 1..10 but 3, 4, 5 and 8; T-0002 sent 2 and 3 (1 missing); T-0003 all of 1..3;
        # T-0004 only sales from before numbers (no seq)
        for device, numbers in (("T-0001", [1, 2, 6, 7, 9, 10]), ("T-0002", [3, 2]), ("T-0003", [1, 2, 3]),
                                ("T-0004", [None, None])):
            for seq in numbers:
                s.add(_sale(device, seq))
        s.add(_sale("T-0002", 3))                      # a number twice (a journal restored): counted once
        s.commit()
    try:
        yield url, sessions
    finally:
        engine.dispose()


def _device(device_id: str, *, online: bool, sw: str | None, cfg: int | None, expires: dt.datetime,
            status: str = "active", backlog: int = 0, oldest: int = 0, want_cfg: int | None = None) -> Device:
    return Device(id=device_id, station_id="ST-001", pin_key_hex="00" * 16, status=status, online=online,
                  reported_software_version=sw, reported_config_version=cfg, desired_config_version=want_cfg,
                  cert_expires_at=expires, cert_fingerprint="ab" * 32, last_seen_at=NOW, backlog=backlog,
                  backlog_oldest_s=oldest)


def _sale(device: str, seq: int | None) -> Transaction:
    return Transaction(sale_id=str(uuid.uuid4()), seq=seq, kind="bank", device_id=device, station_id="ST-001",
                       pump=1, nozzle=1, product="diesel", volume_cl=100, amount_cents=166, price_milli=1659,
                       card_masked="411111******1111", finished_at=NOW, received_at=NOW)


def _rows(table: Table) -> dict[str, dict[str, str]]:
    return {r[0]: dict(zip(table.columns, r, strict=True)) for r in table.rows}


def test_devices_online_and_offline_with_their_versions(db: DB) -> None:
    _, sessions = db
    with sessions() as s:
        table = reports.devices(s, NOW)
    rows = _rows(table)
    assert list(rows) == ["T-0001", "T-0002", "T-0003", "T-0004"]
    assert table.title.startswith("Devices: 2 online, 2 offline")
    assert [rows[d]["link"] for d in rows] == ["online", "offline", "online", "offline"]
    assert (rows["T-0002"]["config"], rows["T-0002"]["config_wanted"]) == ("6", "7")   # behind its desired
    assert (rows["T-0001"]["backlog"], rows["T-0001"]["oldest_unsent_s"]) == ("4", "300")
    assert rows["T-0004"]["software"] == "-"


def test_versions_count_devices_by_software_and_config_online_and_offline(db: DB) -> None:
    _, sessions = db
    with sessions() as s:
        table = reports.versions(s, NOW)
    got = {(r[0], r[1]): r[2:] for r in table.rows}
    assert got == {("software", "1.4.2"): ("1", "1", "2"), ("software", "1.5.0"): ("1", "0", "1"),
                   ("software", "unknown"): ("0", "1", "1"), ("config", "6"): ("0", "1", "1"),
                   ("config", "7"): ("2", "0", "2"), ("config", "unknown"): ("0", "1", "1")}


@pytest.mark.parametrize(("days", "devices"), [(30, ["T-0004", "T-0001"]),
                                               (60, ["T-0004", "T-0001", "T-0002"]),
                                               (90, ["T-0004", "T-0001", "T-0002", "T-0003"])])
def test_certificates_expiring_within_30_60_90_days(db: DB, days: int,
                                                     devices: list[str]) -> None:
    _, sessions = db
    with sessions() as s:
        table = reports.certificates(s, NOW, days)
    assert [r[0] for r in table.rows] == devices                  # soonest first; revoked T-0005 left out
    assert _rows(table)["T-0004"]["days_left"] == "expired" and _rows(table)["T-0001"]["days_left"] == "10"


def test_certificates_window_is_30_60_or_90(db: DB) -> None:
    _, sessions = db
    with sessions() as s, pytest.raises(ConfigError, match="30, 60, 90"):
        reports.certificates(s, NOW, 45)


def test_gaps_are_the_numbers_missing_between_1_and_the_highest_received(db: DB) -> None:
    _, sessions = db
    with sessions() as s:
        table = reports.gaps(s, NOW)
    rows = _rows(table)
    assert list(rows) == ["T-0001", "T-0002", "T-0003"]           # T-0004 sent no numbered sale
    assert [rows["T-0001"][c] for c in ("highest_seq", "received", "missing", "missing_seq")] == [
        "10", "6", "4", "3-5, 8"]
    assert [rows["T-0002"][c] for c in ("received", "missing", "missing_seq")] == ["2", "1", "1"]
    assert [rows["T-0003"][c] for c in ("missing", "missing_seq")] == ["0", ""]
    assert "2 device(s) with gaps" in table.title


def test_gaps_list_at_most_some_runs(db: DB) -> None:
    _, sessions = db
    with sessions() as s:
        s.add_all([_sale("T-0003", n) for n in range(5, 60, 2)])      # 4, 6, 8 ... 58 missing
        s.commit()
        row = _rows(reports.gaps(s, NOW, most_ranges=3))["T-0003"]
    assert row["missing_seq"] == "4, 6, 8 ..." and row["missing"] == "28"


def test_text_and_csv_forms() -> None:
    table = Table("T", ("a", "bee"), [("x", "1"), ("long, value", "")])
    assert reports.to_text(table) == "T\n\na            bee\n-----------  ---\nx            1\nlong, value\n"
    assert list(csv.reader(io.StringIO(reports.to_csv(table)))) == [["a", "bee"], ["x", "1"],
                                                                   ["long, value", ""]]
    assert reports.to_text(Table("E", ("a",), [])).endswith("(none)\n")


def test_the_command_line_prints_a_report_as_a_table_or_csv_and_queues_a_command(
        db: DB, capsys: pytest.CaptureFixture[str]) -> None:
    url, sessions = db
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None)          # the command line reads the clock
    with sessions() as s:
        for each in s.scalars(select(Device)):
            assert each.cert_expires_at is not None
            each.cert_expires_at += today - NOW
        s.commit()
    assert main(["registry", "report", "gaps", "--db", url, "--csv"]) == 0
    out = capsys.readouterr().out
    assert list(csv.reader(io.StringIO(out)))[:2] == [
        ["device", "highest_seq", "received", "missing", "missing_seq"], ["T-0001", "10", "6", "4", "3-5, 8"]]
    assert main(["registry", "report", "certificates", "--days", "60", "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Certificates expiring within 60 days: 3")
    assert "T-0002" in out and "T-0003" not in out
    assert main(["registry", "device", "command", "T-0001", "resend_sales", "--db", url]) == 0
    assert "resend_sales for T-0001: pending until" in capsys.readouterr().out
    with sessions() as s:
        row = s.scalar(select(DeviceCommand))
        assert row is not None
        assert (row.device_id, row.name, row.status) == ("T-0001", "resend_sales", "pending")
    assert main(["registry", "device", "command", "T-0009", "heartbeat", "--db", url]) == EXIT_USAGE
    assert "no such device" in capsys.readouterr().err
    with pytest.raises(SystemExit):                              # argparse refuses an unknown command
        main(["registry", "device", "command", "T-0001", "format_disk", "--db", url])
    with pytest.raises(SystemExit):
        main(["registry", "report", "certificates", "--days", "45", "--db", url])
