"""`forecourt registry prepaid ...` and `forecourt registry topup-bonus ...` run as a cashier and a back
office run them: a subprocess on a real SQLite registry, card numbers only on standard input
(test_fleet_cli's Registry)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forecourtcli.prepaid import parse_credit
from registry.prepaid import Credit
from tests.test_fleet_cli import PAN, PAN2, Registry, one_line


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    made = Registry(tmp_path)
    made.ok("topup-bonus", "list")                     # creates the database
    with sqlite3.connect(made.path) as db:
        db.execute("INSERT INTO products (code, name, code3, \"group\") VALUES "
                   "('diesel', 'Diesel', '019', 'fuel'), ('coffee', 'Coffee', '400', 'shop')")
    return made


def test_credit_syntax() -> None:
    assert parse_credit("shop=group:shop@ST-1,group:north") == Credit("group:shop", "ST-1,group:north",
                                                                      "shop")
    assert parse_credit("group:fuel") == Credit("group:fuel", "", "")


def test_a_cashier_sells_tops_up_with_a_bonus_and_refunds_a_prepaid_card(reg: Registry) -> None:
    out = reg.ok("topup-bonus", "add", "--kind", "prepaid", "--min", "50", "--pct", "10", "--actor", "office")
    assert out == "top-up bonus 1: prepaid, from 50.00 paid\n"
    assert "10%" in reg.ok("topup-bonus", "list", "--on", "2030-01-01")
    out = reg.ok("prepaid", "issue", "--kind", "prepaid", "--number", "-", "--expiry", "3012", "--amount",
                 "100", "--key", "TILL-1", stdin=PAN + "\n", keys=True)
    assert out.splitlines() == ["prepaid card 1: 707700******0019, account 1, credits 1",
                                "credit 1: paid 100.00, bonus 10.00, balance 110.00"]
    again = reg.ok("prepaid", "topup", "--card", "1", "--amount", "100", "--key", "TILL-1")
    assert again == "credit 1: paid 100.00, bonus 10.00, balance 110.00 (booked before: nothing new)\n"
    show = reg.ok("prepaid", "show", "--number", "-", stdin=PAN + "\n", keys=True)
    assert "110.00" in show and "100.00" in show and PAN not in show
    assert reg.ok("prepaid", "refund", "--card", "1", "--key", "OUT-1", "--reason", "returned") == \
        "pay out 100.00 in cash\n"
    assert reg.rows("SELECT kind, amount FROM movements ORDER BY id") == [("topup", 10000), ("bonus", 1000),
                                                                         ("refund", -10000)]
    actions = {a for (a,) in reg.rows("SELECT action FROM audit")}
    assert {"topup_bonus.add", "prepaid.issue", "prepaid.topup", "prepaid.refund"} <= actions
    assert all(PAN not in str(d) and PAN[6:] not in str(d) for (d,) in reg.rows("SELECT detail FROM audit"))


def test_gift_cards_and_shop_credits_at_the_command_line(reg: Registry) -> None:
    reg.ok("prepaid", "issue", "--kind", "gift", "--number", "-", "--expiry", "3012", "--credit",
           "fuel=group:fuel", "--credit", "shop=group:shop", stdin=PAN2 + "\n", keys=True)
    err = one_line(reg.run("prepaid", "topup", "--account", "1", "--amount", "20", "--key", "K"), 2)
    assert "several credits" in err
    reg.ok("prepaid", "topup", "--account", "1", "--amount", "20", "--key", "K", "--wallet", "2")
    assert "not refundable" in one_line(reg.run("prepaid", "refund", "--card", "1", "--key", "R",
                                                "--reason", "asked"), 1)
    assert "no product is in that group" in one_line(reg.run(
        "prepaid", "issue", "--kind", "gift", "--number", "-", "--expiry", "3012", "--credit", "group:toys",
        stdin=PAN + "\n", keys=True), 2)
    out = reg.run("prepaid", "issue", "--kind", "gift", "--number", PAN, "--expiry", "3012")
    assert out.returncode == 2 and "standard input" in out.stderr and PAN not in out.stderr + out.stdout


def test_an_offer_ends(reg: Registry) -> None:
    reg.ok("topup-bonus", "add", "--kind", "gift", "--min", "0", "--amount", "5")
    assert reg.ok("topup-bonus", "end", "1", "--on", "2026-01-31", "--reason", "promotion over") == \
        "top-up bonus 1: last day 2026-01-31\n"
    assert reg.ok("topup-bonus", "list", "--on", "2026-02-01").count("\n") == 1          # the header alone
    assert "a bonus is" in one_line(reg.run("topup-bonus", "add", "--kind", "gift", "--min", "1"), 2)
