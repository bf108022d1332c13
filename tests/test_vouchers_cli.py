"""`forecourt registry voucher issue|list|show|void|release` run as the operator runs them: a subprocess on a
real SQLite registry. The codes are on the sheets only (read back from their QR codes here)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_fleet_cli import Registry as CliRegistry
from test_vouchers import decode_qr, seed

from registry import vouchers
from registry.db import open_database


class Registry(CliRegistry):
    group = ("voucher",)

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        engine, sessions = open_database(self.db)
        with sessions() as s:
            seed(s)
        engine.dispose()


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


def failed(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    return out.stderr


def issue(reg: Registry, out: Path, *extra: str) -> str:
    return reg.ok("issue", "--product", "diesel", "--litres", "40", "--count", "2", "--expires", "2027-06-30",
                  "--batch", "XMAS", "--out", str(out), "--state-dir", str(reg.state), *extra)


def test_issue_writes_sheets_and_prints_no_code(reg: Registry, tmp_path: Path) -> None:
    out = tmp_path / "sheets"
    said = issue(reg, out, "--pdf")
    assert said == f"2 vouchers issued (ids 1-2) for 40.00 L diesel; 3 files in {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["voucher-000001.png", "voucher-000002.png",
                                                     "vouchers-000001-000002.pdf"]
    hints = [h for (h,) in reg.rows("SELECT code_hint FROM vouchers ORDER BY id")]
    [(actor, action, detail)] = reg.rows("SELECT actor, action, detail FROM audit")
    assert (actor, action, json.loads(str(detail))["count"]) == ("operator1", "voucher.issue", 2)
    with Image.open(out / "voucher-000001.png") as png:
        codes = decode_qr(png)
    if codes is not None:                       # zxing-cpp installed: the sheet's code is the stored one
        [code] = codes
        assert code[-4:] == hints[0] and code not in said and code[:8] not in str(detail)
        engine, sessions = open_database(reg.db)
        with sessions() as s:
            assert vouchers.redeem(s, reg.keys, code, terminal="T1", station="S1",
                                   now=dt.datetime(2026, 12, 1)).voucher_id == 1
        engine.dispose()
        assert reg.rows("SELECT status FROM vouchers ORDER BY id") == [("redeemed",), ("issued",)]


def test_list_show_void_release(reg: Registry, tmp_path: Path) -> None:
    issue(reg, tmp_path / "sheets")
    [(hint1,), (hint2,)] = reg.rows("SELECT code_hint FROM vouchers ORDER BY id")
    listed = reg.ok("list").splitlines()
    assert listed[0].split() == ["ID", "HINT", "PRODUCT", "LITRES", "STATUS", "BATCH", "ISSUED", "EXPIRES",
                                 "REDEEMED", "TERMINAL"]
    assert [line.split()[:5] for line in listed[1:]] == [["2", str(hint2), "diesel", "40.00", "L"],
                                                         ["1", str(hint1), "diesel", "40.00", "L"]]
    shown = reg.ok("show", "1")
    assert f"hint      {hint1}\n" in shown and "status    issued\n" in shown
    assert "expires   2027-06-30\n" in shown
    assert "id        1\n" in reg.ok("show", "--hint", str(hint1))
    assert "give a voucher id or --hint" in failed(reg.run("show"), 2)
    failed(reg.run("show", "1", "--hint", str(hint1)), 2)
    assert "no such voucher" in failed(reg.run("show", "9"), 2)

    no_reason = reg.run("void", "1")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert reg.ok("void", "1", "--reason", "lost in the post") == "voucher 1: void\n"
    assert "void, not issued" in failed(reg.run("void", "1", "--reason", "again"), 1)
    assert [line.split()[0] for line in reg.ok("list", "--status", "void").splitlines()[1:]] == ["1"]
    assert reg.rows("SELECT actor, action, subject, reason FROM audit WHERE action = 'voucher.void'") == [
        ("operator1", "voucher.void", "voucher:1", "lost in the post")]

    reg.rows("UPDATE vouchers SET status = 'redeemed', terminal = 'T7' WHERE id = 2")
    failed(reg.run("release", "2", "--terminal", "T8", "--reason", "pump fault"), 2)
    assert reg.ok("release", "2", "--terminal", "T7", "--reason", "pump fault") == "voucher 2: usable again\n"
    assert reg.rows("SELECT status, terminal FROM vouchers WHERE id = 2") == [("issued", None)]
    assert reg.rows("SELECT actor, reason FROM audit WHERE action = 'voucher.release'") == [
        ("operator1", "pump fault")]


def test_refusals_are_one_line_and_issue_nothing(reg: Registry, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.png").write_bytes(b"x")
    base = ["issue", "--product", "diesel", "--litres", "40", "--expires", "2027-06-30"]
    assert "empty directory" in failed(reg.run(*base, "--out", str(full), "--state-dir", str(reg.state)), 2)
    assert "holds no registry-keys.json" in failed(reg.run(*base, "--out", str(tmp_path / "a"),
                                                           "--state-dir", str(tmp_path)), 2)
    product = ["issue", "--product", "kerosene", "--litres", "40", "--expires", "none"]
    assert "unknown product" in failed(reg.run(*product, "--out", str(tmp_path / "b"), "--state-dir",
                                               str(reg.state)), 2)
    bad_date = reg.run(*base[:-2], "--expires", "30.06.2027", "--out", str(tmp_path / "c"))
    assert bad_date.returncode == 2 and "date must be YYYY-MM-DD or none" in bad_date.stderr
    failed(reg.run(*base, "--count", "1001", "--out", str(tmp_path / "d"), "--state-dir", str(reg.state)), 2)
    assert reg.rows("SELECT count(*) FROM vouchers") == [(0,)]
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()
