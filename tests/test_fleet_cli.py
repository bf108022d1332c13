"""`forecourt registry customer|account|wallet|limit|window|card|statement|ledger` run as the operator runs
them: a subprocess on a real SQLite registry; card numbers and PINs only on standard input."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecourtcli.fleet import decimal_units
from forecourtcli.fleet_limits import DAYS, parse_days, parse_times
from registry.fleet.statements import money
from registry.keys import load_or_create_keys

PAN, PAN2 = "7077001000000019", "7077001000000027"


class Registry:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "registry.db"
        self.state = tmp_path / "state"
        self.keys = load_or_create_keys(self.state / "registry-keys.json")
        self.db = f"sqlite:///{self.path}"

    group: tuple[str, ...] = ()           # a subclass's command group: ("attendant",), ("voucher",)

    def command(self, *args: str, keys: bool = False) -> list[str]:
        extra = ["--state-dir", str(self.state)] if keys else []
        return [sys.executable, "-m", "forecourtcli", "registry", *self.group, *args, "--db", self.db, *extra]

    def run(self, *args: str, stdin: str = "", keys: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args, keys=keys), input=stdin, check=False, capture_output=True,
                              text=True, timeout=60, env=os.environ | {"USER": "operator1"})

    def ok(self, *args: str, stdin: str = "", keys: bool = False) -> str:
        out = self.run(*args, stdin=stdin, keys=keys)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.path) as db:
            return db.execute(sql).fetchall()


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


def one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("forecourt: ")
    assert out.stderr.count("\n") == 1
    return out.stderr


def test_operator_sets_up_an_account_tops_up_issues_and_replaces_a_card(reg: Registry) -> None:
    assert reg.ok("customer", "add", "--name", "Hauler GmbH", "--tax-id", "DE123") == \
        "customer 1: Hauler GmbH (company)\n"
    reg.ok("account", "add", "--customer", "1", "--name", "Trucks", "--timezone", "Europe/Berlin",
           "--prompts", "odometer,vehicle")
    assert reg.ok("vehicle", "add", "--account", "1", "--number", "AB-12") == "vehicle 1: AB12\n"
    reg.ok("driver", "add", "--account", "1", "--code", "0042", "--name", "Dana")
    reg.ok("wallet", "add", "--account", "1", "--unit", "volume", "--products", "001-099")
    reg.ok("wallet", "add", "--account", "1", "--unit", "money", "--mode", "postpaid", "--credit", "500")
    for _ in range(2):              # the same payment reference twice: booked once
        assert "balance 300.00 L" in reg.ok("wallet", "topup", "1", "--amount", "300", "--key", "INV-7",
                                            "--reason", "contract December", "--actor", "alice")
    reg.ok("wallet", "order", "--account", "1", "2", "1")
    reg.ok("limit", "set", "--account", "1", "--period", "day", "--unit", "volume", "--max", "60")
    reg.ok("limit", "set", "--account", "1", "--period", "week", "--unit", "count", "--max", "10")
    reg.ok("window", "add", "--account", "1", "--days", "mon-fri", "--times", "06:00-22:00")
    issued = reg.ok("card", "issue", "--account", "1", "--number", "-", "--pin", "--expiry", "2812",
                    "--vehicle", "1", "--activate", stdin=f"{PAN}\n1234\n", keys=True)
    assert issued == "card 1: 707700******0019, active\n"
    token, verifier, sealed = reg.rows("SELECT token, pin_verifier, number_sealed FROM cards")[0]
    assert token == reg.keys.token(PAN) and verifier == reg.keys.pin_verifier(token, "1234")
    assert isinstance(sealed, str) and reg.keys.open_number(sealed) == PAN

    assert reg.ok("card", "lost", "1", "--reason", "driver called") == "card 1 707700******0019: lost\n"
    one_line(reg.run("card", "unblock", "1", "--reason", "found again"), 1)
    assert "replaced by card 2: 707700******0027, new" in reg.ok(
        "card", "reissue", "1", "--number", "-", "--expiry", "2912", "--reason", "replacement", stdin=PAN2,
        keys=True)
    reg.ok("card", "activate", "2", "--reason", "delivered")
    assert reg.ok("card", "list", "--status", "lost").splitlines()[1].split()[:3] == ["1", "707700******0019",
                                                                                      "lost"]
    assert reg.ok("card", "expire") == "0 cards past their expiry month marked expired\n"
    shown = reg.ok("card", "show", "1")
    assert "lost" in shown and "replaced_by        2" in shown
    summary = reg.ok("account", "show", "1")
    assert "300.00 L" in summary and "500.00" in summary and "60.00 L" in summary and "count" in summary
    assert summary.index("money") < summary.index("volume  prepaid")         # wallet 2 pays first
    assert reg.ok("ledger", "check").startswith("ledger sound")
    audit = reg.rows("SELECT actor, action, reason, detail FROM audit ORDER BY id")
    assert ("alice", "wallet.topup", "contract December") in [a[:3] for a in audit]
    assert ("operator1", "card.lost", "driver called") in [a[:3] for a in audit]
    assert [a[1] for a in audit].count("wallet.topup") == 1
    assert not any(PAN in str(a) or PAN2 in str(a) or "1234" in str(a) for a in audit)
    assert json.loads(str(audit[-1][3])) == {"after": "active", "before": "new"}


def test_station_groups(reg: Registry) -> None:
    assert reg.ok("group", "list") == "GROUP  STATIONS\n"             # none yet (and the schema made)
    with sqlite3.connect(reg.path) as db:
        db.execute("INSERT INTO stations (id, name, currency) VALUES ('ST-9', 'Nine', 'EUR')")
    assert reg.ok("group", "add", "south", "--station", "ST-9") == "station ST-9 added to group south\n"
    assert reg.ok("group", "list").splitlines()[1].split() == ["south", "ST-9"]
    assert "group name" in one_line(reg.run("group", "add", "a:b", "--station", "ST-9"), 2)
    assert reg.ok("group", "remove", "south", "--station", "ST-9") == \
        "station ST-9 removed from group south\n"


def test_statement_as_csv(reg: Registry) -> None:
    reg.ok("customer", "add", "--name", "Quiet Ltd")
    text = reg.ok("statement", "--customer", "1", "--from", "2026-12-01", "--to", "2026-12-31", "--csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["record", "date", "card"] and rows[-1][0] == "total"
    assert "Quiet Ltd" in reg.ok("statement", "--customer", "1", "--from", "2026-12-01", "--to", "2026-12-31")


def test_card_number_is_never_taken_from_the_command_line(reg: Registry) -> None:
    reg.ok("customer", "add", "--name", "C")
    reg.ok("account", "add", "--customer", "1", "--name", "A")
    out = reg.run("card", "issue", "--account", "1", "--number", PAN, "--expiry", "2812", keys=True)
    assert out.returncode == 2 and "standard input" in out.stderr and PAN not in out.stderr + out.stdout
    out = reg.run("card", "issue", "--account", "1", "--number", "-", "--pin", "--expiry", "2812", stdin=PAN,
                  keys=True)
    assert "second line" in one_line(out, 2) and PAN not in out.stderr
    assert reg.rows("SELECT count(*) FROM cards") == [(0,)]


def test_user_errors_are_one_line(reg: Registry, tmp_path: Path) -> None:
    reg.ok("customer", "add", "--name", "C")
    reg.ok("account", "add", "--customer", "1", "--name", "A")
    reg.ok("wallet", "add", "--account", "1", "--unit", "money")
    assert "unknown account" in one_line(reg.run("wallet", "add", "--account", "9", "--unit", "money"), 2)
    assert "IANA" in one_line(reg.run("account", "add", "--customer", "1", "--name", "B", "--timezone",
                                      "Moon/Base"), 2)
    assert "reason" in one_line(reg.run("wallet", "correct", "1", "--amount", "5", "--reason", " "), 2)
    assert "not enough" in one_line(reg.run("wallet", "correct", "1", "--amount", "-5", "--reason", "x"), 1)
    out = reg.run("card", "issue", "--account", "1", "--number", "-", "--expiry", "2812", "--state-dir",
                  str(tmp_path / "elsewhere"), stdin=PAN)
    assert "registry-keys.json" in one_line(out, 2) and not (tmp_path / "elsewhere").exists()
    assert reg.run("wallet", "topup", "1", "--amount", "1.234", "--reason", "x", "--key", "K").returncode == 2
    assert reg.run("wallet", "topup", "1", "--amount", "1", "--reason", "x").returncode == 2   # no reference


def test_ledger_check_fails_on_a_balance_its_movements_do_not_make(reg: Registry) -> None:
    reg.ok("customer", "add", "--name", "C")
    reg.ok("account", "add", "--customer", "1", "--name", "A")
    reg.ok("wallet", "add", "--account", "1", "--unit", "money")
    reg.ok("wallet", "topup", "1", "--amount", "10", "--reason", "x", "--key", "PAY-1")
    assert "closes empty" in one_line(reg.run("account", "close", "1", "--reason", "left"), 1)
    reg.ok("wallet", "correct", "1", "--amount", "-10", "--reason", "refunded")
    assert reg.ok("account", "close", "1", "--reason", "left") == \
        "account 1: closed, its wallets closed, 0 cards withdrawn\n"
    with sqlite3.connect(reg.path) as db:
        db.execute("UPDATE wallets SET balance = 5000 WHERE id = 1")
    out = reg.run("ledger", "check")
    assert out.returncode == 1 and "wallet 1: balance 5000 but its movements sum to 0" in out.stdout


@given(st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1))
def test_amounts_round_trip_through_the_statement_format(cents: int) -> None:
    assert decimal_units(money(cents)) == cents


@given(st.text(max_size=30))
def test_amount_day_and_time_parsers_take_any_text(text: str) -> None:
    for parse in (decimal_units, parse_days, parse_times):      # a value or argparse's error, nothing else
        with contextlib.suppress(argparse.ArgumentTypeError):
            parse(text)


@given(st.integers(min_value=1, max_value=127), st.integers(0, 1439), st.integers(0, 1440))
def test_days_and_times_round_trip(mask: int, start: int, end: int) -> None:
    days = ",".join(name for i, name in enumerate(DAYS) if mask >> i & 1)
    assert parse_days(days) == mask
    assert parse_times(f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}") == (start, end)
