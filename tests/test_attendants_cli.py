"""`forecourt registry attendant ...` run as the operator runs it: a subprocess on a real SQLite registry;
the card number and the PIN only on standard input (or a terminal), never in argv, output or the audit."""

from __future__ import annotations

import os
import pty
import select
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from test_fleet_cli import Registry as CliRegistry

from contracts.signing import pin_matches

NUMBER = "9001000000000018"          # Luhn-valid
PIN = "4071"


class Registry(CliRegistry):
    group = ("attendant",)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(tmp_path)
    r.ok("list")                                    # makes the schema
    with sqlite3.connect(r.path) as db:
        db.executemany("INSERT INTO stations (id, name, currency) VALUES (?, ?, 'EUR')",
                       [("ST-1", "One"), ("ST-2", "Two")])
    return r


def fails(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("forecourt: ")
    assert out.stderr.count("\n") == 1
    return out.stderr


def test_operator_adds_an_attendant_with_card_and_pin(reg: Registry) -> None:
    assert reg.ok("add", "A1", "--name", "Sam", "--role", "supervisor", "--stations", "ST-2,ST-1") == \
        "attendant A1: Sam, supervisor, stations ST-1,ST-2; next: set a card and a PIN\n"
    assert reg.ok("card", "A1", "--number", "-", stdin=NUMBER + "\n", keys=True) == \
        "attendant A1: card 900100******0018\n"
    assert reg.ok("pin", "A1", stdin=PIN + "\n") == "attendant A1: PIN set\n"
    token, verifier, status = reg.rows("SELECT card_token, pin_verifier, status FROM attendants")[0]
    assert token == reg.keys.token(NUMBER) and status == "active"
    assert isinstance(verifier, str) and pin_matches(verifier.split("|")[0], PIN)
    assert reg.ok("list").splitlines() == [
        "ID  NAME  ROLE        STATUS  STATIONS   CARD  PIN  WRONG TRIES",
        "A1  Sam   supervisor  active  ST-1,ST-2  set   set  0"]
    assert reg.ok("lock", "A1", "--reason", "on leave", "--actor", "alice") == "attendant A1: locked\n"
    assert reg.ok("list", "--status", "active").splitlines()[1:] == []
    assert reg.ok("unlock", "A1", "--reason", "back") == "attendant A1: active\n"
    assert reg.ok("withdraw", "A1", "--reason", "left") == "attendant A1: withdrawn\n"
    audit = reg.rows("SELECT actor, action, subject, reason, detail FROM audit ORDER BY id")
    assert [(a[0], a[1]) for a in audit] == [
        ("operator1", "attendant.add"), ("operator1", "attendant.card"), ("operator1", "attendant.pin"),
        ("alice", "attendant.lock"), ("operator1", "attendant.unlock"), ("operator1", "attendant.withdraw")]
    assert {a[2] for a in audit} == {"attendant:A1"} and audit[3][3] == "on leave"
    assert not any(NUMBER in str(a) or PIN in str(a) for a in audit)


def test_list_by_station(reg: Registry) -> None:
    reg.ok("add", "A1", "--name", "Sam", "--stations", "ST-1")
    reg.ok("add", "A2", "--name", "Kim", "--stations", "ST-2")
    reg.ok("add", "A3", "--name", "Lee")
    assert [line.split()[0] for line in reg.ok("list", "--station", "ST-2").splitlines()[1:]] == ["A2", "A3"]


def test_secrets_never_from_argv_and_bad_values_are_one_line(reg: Registry) -> None:
    reg.ok("add", "A1", "--name", "Sam")
    out = reg.run("card", "A1", "--number", NUMBER, keys=True)
    assert out.returncode == 2 and NUMBER not in out.stderr + out.stdout
    assert "standard input" in out.stderr
    assert "PIN" in fails(reg.run("pin", "A1", stdin="1234\n"), 2)
    assert "1234" not in reg.run("pin", "A1", stdin="1234\n").stderr
    assert "standard input" in fails(reg.run("pin", "A1", stdin=""), 2)
    assert "unknown attendant" in fails(reg.run("pin", "B9", stdin=PIN + "\n"), 2)
    assert "card number" in fails(reg.run("card", "A1", "--number", "-", stdin="9001000000000010\n",
                                          keys=True), 2)
    assert "state-dir" in fails(reg.run("card", "A1", "--number", "-", "--state-dir", str(reg.path.parent
                                                                                          / "nowhere"),
                                        stdin=NUMBER), 2)
    assert "unknown station" in fails(reg.run("add", "A2", "--name", "Kim", "--stations", "ST-9"), 2)
    assert "reason" in fails(reg.run("lock", "A1", "--reason", ""), 2)
    reg.ok("withdraw", "A1", "--reason", "left")
    assert "withdrawn" in fails(reg.run("unlock", "A1", "--reason", "x"), 1)       # a refused change: 1
    assert reg.rows("SELECT pin_verifier FROM attendants") == [("",)]


def _on_terminal(reg: Registry, answers: list[str]) -> tuple[int, str]:
    """Run `attendant pin A1` on a pseudo-terminal, typing each answer once its prompt is shown."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(reg.command("pin", "A1"), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, env=os.environ | {"USER": "operator1"})
    os.close(slave)
    seen, typed = b"", 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if typed < len(answers) and seen.count(b"PIN") > typed:
                os.write(master, answers[typed].encode() + b"\n")
                typed += 1
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 1024)
                except OSError:         # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(60), seen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_pin_asked_twice_without_echo_on_a_terminal(reg: Registry) -> None:
    reg.ok("add", "A1", "--name", "Sam")
    code, shown = _on_terminal(reg, ["2580", "2581"])
    assert code == 2 and "differ" in shown and "2580" not in shown
    code, shown = _on_terminal(reg, ["2580", "2580"])
    assert code == 0 and "PIN set" in shown and "2580" not in shown
    verifier = reg.rows("SELECT pin_verifier FROM attendants")[0][0]
    assert isinstance(verifier, str) and pin_matches(verifier, "2580")
