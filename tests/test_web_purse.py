"""Chip wallets in the back office (registry.web.api_purse, pages_purse) on a real migrated SQLite registry:
a card's purse with shadow balances, records and flags (real signed records through the real ingest),
ordering a top-up once however often the form is sent, the operator's chip scripts, the network's flag
list and the SAMs; a fleet customer sees only their own cards (404 for another's, in URL, API and form)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from contracts.purse_keys import Purpose, Unit
from contracts.purse_records import Kind, PurchaseRecord, sign
from registry.fleet import cards, ledger
from registry.models import Account, AuditEntry, Card, Customer, Wallet
from registry.purse import scripts, topups
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import FLAGS, register_purse, register_sam
from registry.purse.records import Item, ingest
from registry.purse_models import PurseLoad, PurseSam, PurseScript
from registry.web.texts import catalogue
from tests.web_client import WebClient, WebDb

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
SAM = bytes.fromhex("53410000000000a1")
Client = Callable[..., WebClient]


@dataclass
class Chip:
    """A customer, an account with a funded money and litre wallet, a card whose purse has chip wallet 0
    (money, 100.00 on it) and 1 (litres, 200.00 L on it)."""

    customer_id: int
    card_id: int
    purse_id: bytes
    chip0: int
    chip1: int


def make_chip(db: WebDb, purse_id: bytes, name: str = "Acme") -> Chip:
    with db.sessions() as s:
        customer = Customer(name=name, kind="company", created_at=NOW)
        s.add(customer)
        s.flush()
        account = Account(name=f"{name} fleet", customer_id=customer.id)
        s.add(account)
        s.flush()
        made = [Wallet(account_id=account.id, allowed_products="", unit=u, name=n)
                for u, n in (("money", "funds"), ("volume", "litres"), ("money", "chip money"),
                             ("volume", "chip litres"))]
        s.add_all(made)
        s.flush()
        card = Card(token=uuid.uuid4().hex, masked="707700******" + purse_id.hex()[-4:],
                    account_id=account.id, expiry="2912", pin_verifier="", status="active",
                    status_changed_at=NOW)
        s.add(card)
        s.flush()
        ledger.topup(s, made[0], 100_000, key=f"seed:{purse_id.hex()}:0", at=NOW, actor="test")
        ledger.topup(s, made[1], 50_000, key=f"seed:{purse_id.hex()}:1", at=NOW, actor="test")
        ledger.transfer(s, made[0], made[2], 10_000, key=f"seed:{purse_id.hex()}:c0", at=NOW, actor="test")
        ledger.transfer(s, made[1], made[3], 20_000, key=f"seed:{purse_id.hex()}:c1", at=NOW, actor="test")
        register_purse(s, card.id, purse_id, {0: made[2].id, 1: made[3].id}, now=NOW)
        if s.get(PurseSam, SAM.hex()) is None:
            register_sam(s, SAM, "T-0042", now=NOW)
        IssuerKeys.load(s, db.keys, now=NOW)
        s.commit()
        return Chip(customer.id, card.id, purse_id, made[2].id, made[3].id)


def purchase(db: WebDb, chip: Chip, counter: int, amount: int, before: int) -> None:
    """The card's genuine signed purchase record from chip wallet 0, through the registry's ingest."""
    with db.sessions() as s:
        issuer = IssuerKeys.load(s, db.keys, now=NOW)
        record = PurchaseRecord(key_version=1, kind=Kind.PURCHASE, card_id=chip.purse_id, wallet=0,
                                counter=counter, amount=amount, unit=Unit.MONEY, product=19, terminal=SAM,
                                time=int(NOW.replace(tzinfo=dt.UTC).timestamp()), previous_balance=before,
                                new_balance=before - amount)
        raw = sign(issuer.card_key(chip.purse_id, Purpose.RECORD, 1), record)
        ingest(s, issuer, [Item(raw)], source="mqtt:T-0042", now=NOW)
        s.commit()


def open_scripts(db: WebDb, op: str) -> list[PurseScript]:
    with db.sessions() as s:
        return list(s.scalars(select(PurseScript).where(PurseScript.op == op, PurseScript.status == "open")))


def test_operator_sees_a_cards_chip_wallets_records_and_flags(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000101"))
    purchase(web_db, chip, 1, 1_250, 10_000)
    purchase(web_db, chip, 1, 999, 10_000)              # another record for counter 1: a replay
    op = signed_in("operator")
    view = op.get(f"/api/purse/cards/{chip.card_id}").json()
    assert view["purse"]["purse_id"] == chip.purse_id.hex() and view["purse"]["last_record_counter"] == 1
    assert [(w["number"], w["unit"], w["balance"]) for w in view["wallets"]] == \
        [(0, "money", 8_750), (1, "volume", 20_000)]
    assert [r["amount"] for r in view["records"]] == [999, 1_250]
    assert view["records"][1]["terminal"] == "T-0042" and view["records"][1]["kind"] == "purchase"
    assert "replay" in [f["flag"] for f in view["flags"]]
    html = op.get(f"/purse/cards/{chip.card_id}").text
    assert chip.purse_id.hex() in html and "87.50" in html and "200.00 L" in html
    assert 'id="next-contact"' in html and "Replay".lower() in html.lower()
    assert f'href="/purse/cards/{chip.card_id}"' in op.get(f"/fleet/cards/{chip.card_id}").text


def test_fleet_customer_sees_only_their_own_cards(web_db: WebDb, signed_in: Client) -> None:
    mine = make_chip(web_db, bytes.fromhex("7077000000000201"), "Mine")
    theirs = make_chip(web_db, bytes.fromhex("7077000000000202"), "Theirs")
    c = signed_in("fleet", customer_id=mine.customer_id)
    assert c.get(f"/api/purse/cards/{mine.card_id}").status_code == 200
    page = c.get(f"/purse/cards/{mine.card_id}").text
    assert 'id="topup-0"' in page and 'id="reset-pin-tries"' not in page and 'id="set-limits"' not in page
    assert f'href="/purse/cards/{mine.card_id}"' in c.get(f"/customer/cards/{mine.card_id}").text
    assert c.get(f"/api/purse/cards/{theirs.card_id}").status_code == 404
    assert c.get(f"/purse/cards/{theirs.card_id}").status_code == 404
    assert c.get("/api/purse/cards/99999").status_code == 404
    sent = c.form(f"/purse/cards/{theirs.card_id}/topup", {"wallet": "0", "unit": "money", "amount": "5"})
    assert sent.status_code == 404
    assert c.api("POST", f"/api/purse/cards/{theirs.card_id}/topups",
                 json={"wallet": 0, "amount": 500, "unit": "money"}).status_code == 404
    assert open_scripts(web_db, "topup") == []
    # operator-only parts
    assert c.form(f"/purse/cards/{mine.card_id}/pin-tries", {"reason": "x"}).status_code == 403
    assert c.get("/api/purse/flags").status_code == 403
    assert c.get("/purse/sams").status_code == 403
    with web_db.sessions() as s:                          # a cardholder: not even their own card here
        prepaid = Account(name="own", kind="prepaid")
        s.add(prepaid)
        s.flush()
        own = Card(token=uuid.uuid4().hex, masked="707700******7777", account_id=prepaid.id, expiry="2912",
                   pin_verifier="", status="active", status_changed_at=NOW)
        s.add(own)
        s.commit()
        prepaid_id, own_id = prepaid.id, own.id
    holder = signed_in("cardholder", account_id=prepaid_id)
    assert holder.get(f"/api/purse/cards/{own_id}").status_code == 403


def test_a_double_submit_orders_the_top_up_once(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000301"))
    c = signed_in("fleet", customer_id=chip.customer_id)
    form = {"wallet": "1", "unit": "volume", "amount": "40,5", "key": "web-abc-w1"}
    for _ in range(2):
        sent = c.form(f"/purse/cards/{chip.card_id}/topup", form)
        assert sent.status_code == 303 and sent.headers["location"].endswith("?done=topup")
    orders = open_scripts(web_db, "topup")
    assert len(orders) == 1 and orders[0].actor == f"web:{c.login}"
    view = c.get(f"/api/purse/cards/{chip.card_id}").json()
    assert [(o["wallet"], o["amount"], o["unit"], o["loading"]) for o in view["orders"]] == \
        [(1, 4_050, "volume", False)]
    assert "40.50 L" in c.get(f"/purse/cards/{chip.card_id}?done=topup").text
    body = {"wallet": 0, "amount": 2_000, "unit": "money", "key": "api-1"}
    first = c.api("POST", f"/api/purse/cards/{chip.card_id}/topups", json=body).json()
    again = c.api("POST", f"/api/purse/cards/{chip.card_id}/topups", json=body).json()
    assert first["id"] == again["id"] and len(open_scripts(web_db, "topup")) == 2
    with web_db.sessions() as s:
        audits = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "purse.topup_order")))
        assert len(audits) == 2 and {json.loads(a.detail)["amount"] for a in audits} == {4_050, 2_000}
        # what the next online contact offers the terminal: exactly the orders, in order
        offers = topups.offers(s, chip.purse_id, 7)
        assert [(o.wallet, o.amount) for o in offers] == [(1, 4_050), (0, 2_000)]
        # a terminal has the first granted (registry.purse.loads books it so): "loading"; once its LOAD record
        # confirmed it, the order is done and no longer listed
        grant = PurseLoad(load_id=offers[0].load_id.hex(), purse_id=orders[0].purse_id, wallet=1,
                          wallet_id=chip.chip1, purpose="topup", script_id=offers[0].order, counter=7,
                          amount=4_050, unit=2, key_version=1, mac="00" * 16, status="authorized",
                          requested_at=NOW)
        s.add(grant)
        s.commit()
        listed = c.get(f"/api/purse/cards/{chip.card_id}").json()["orders"]
        assert [o["loading"] for o in listed] == [True, False]
        grant.status = "confirmed"
        s.commit()
    assert [o["id"] for o in c.get(f"/api/purse/cards/{chip.card_id}").json()["orders"]] == [first["id"]]


def test_wrong_unit_and_bad_amounts_are_refused_clearly(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000401"))
    op = signed_in("operator")
    url = f"/api/purse/cards/{chip.card_id}/topups"
    wrong = op.api("POST", url, json={"wallet": 1, "amount": 500, "unit": "money"})
    assert wrong.status_code == 400 and "litres" in wrong.json()["error"]
    for amount in (-500, 0, 2**32):
        bad = op.api("POST", url, json={"wallet": 0, "amount": amount, "unit": "money"})
        assert bad.status_code == 400 and "more than 0" in bad.json()["error"]
    assert op.api("POST", url, json={"wallet": 5, "amount": 500, "unit": "money"}).status_code == 400
    page = op.form(f"/purse/cards/{chip.card_id}/topup", {"wallet": "0", "unit": "money", "amount": "-5"})
    assert page.status_code == 400 and "more than 0" in page.text
    assert op.form(f"/purse/cards/{chip.card_id}/topup",
                   {"wallet": "0", "unit": "money", "amount": "abc"}).status_code == 400
    with web_db.sessions() as s:
        cards.move(s, chip.card_id, "lost", actor="test", reason="reported", now=NOW)
        s.commit()
    lost = op.api("POST", url, json={"wallet": 0, "amount": 500, "unit": "money"})
    assert lost.status_code == 400 and "lost" in lost.json()["error"]
    assert 'id="topup-0"' not in op.get(f"/purse/cards/{chip.card_id}").text
    assert open_scripts(web_db, "topup") == []


def test_operator_scripts_go_to_the_chip_at_its_next_contact(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000501"))
    op = signed_in("operator")
    for _ in range(2):                                   # asked twice while open: one script
        sent = op.form(f"/purse/cards/{chip.card_id}/pin-tries", {"reason": "driver forgot"})
        assert sent.status_code == 303
    assert len(open_scripts(web_db, "reset_pin_tries")) == 1
    sent = op.form(f"/purse/cards/{chip.card_id}/limits", {"wallet": "1", "day": "80", "month": "1500,5"})
    assert sent.status_code == 303
    (limits,) = open_scripts(web_db, "set_limits")
    assert bytes.fromhex(limits.payload) == scripts.limits_payload(1, 8_000, 150_050)
    html = op.get(f"/purse/cards/{chip.card_id}?done=limits").text
    assert "next online contact" in html and f'id="script-{limits.id}"' in html
    assert "day 80.00 L, month 1500.50 L" in html
    with web_db.sessions() as s:
        issuer = IssuerKeys.load(s, web_db.keys, now=NOW)
        due = scripts.scripts_for(s, issuer, chip.purse_id, 3, now=NOW)
        assert [(x.op.name, x.counter) for x in due] == [("RESET_PIN_TRIES", 3), ("SET_LIMITS", 4)]
        subject = f"card:{chip.card_id}"
        actions = set(s.scalars(select(AuditEntry.action).where(AuditEntry.subject == subject)))
    assert {"purse.reset_pin_tries", "purse.set_limits"} <= actions
    bad = op.api("POST", f"/api/purse/cards/{chip.card_id}/limits", json={"wallet": 0, "day": -1, "month": 0})
    assert bad.status_code == 400


def test_flag_list_and_sams(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000601"))
    purchase(web_db, chip, 1, 100, 10_000)
    purchase(web_db, chip, 3, 100, 9_900)               # counter 2 never arrived: a gap
    purchase(web_db, chip, 3, 200, 9_900)               # and a replay of 3
    op = signed_in("operator")
    found = op.get("/api/purse/flags").json()
    names = [f["flag"] for f in found]
    assert {"counter_gap", "replay"} <= set(names)
    assert [f["id"] for f in found] == sorted((f["id"] for f in found), reverse=True)     # newest first
    assert all(f["card_id"] == chip.card_id and "******" in f["card"] for f in found if f["purse_id"])
    assert {f["flag"] for f in op.get("/api/purse/flags?flag=replay").json()} == {"replay"}
    html = op.get("/purse/flags").text
    assert f'href="/purse/cards/{chip.card_id}"' in html and "counter gap" in html
    assert 'href="/purse/flags"' in op.get("/").text
    sams = op.get("/api/purse/sams").json()
    assert [(x["sam_id"], x["terminal"], x["status"]) for x in sams] == [(SAM.hex(), "T-0042", "active")]
    assert f'id="release-{SAM.hex()}"' in op.get("/purse/sams").text
    sent = op.form(f"/purse/sams/{SAM.hex()}/release", {"reason": "moved to T-0043"})
    assert sent.status_code == 303
    assert op.get("/api/purse/sams").json()[0]["status"] == "replaced"
    assert op.form("/purse/sams/00000000000000ff/revoke", {"reason": ""}).status_code == 404
    with web_db.sessions() as s:
        assert s.scalars(select(AuditEntry.actor).where(AuditEntry.action == "purse_sam_replaced")).one() \
            == f"web:{op.login}"


def test_a_card_without_a_purse(web_db: WebDb, signed_in: Client) -> None:
    chip = make_chip(web_db, bytes.fromhex("7077000000000701"))
    with web_db.sessions() as s:
        account_id = s.get(Card, chip.card_id).account_id     # type: ignore[union-attr]
        card = Card(token=uuid.uuid4().hex, masked="707700******9999", account_id=account_id, expiry="2912",
                    pin_verifier="", status="active", status_changed_at=NOW)
        s.add(card)
        s.commit()
        plain = card.id
    op = signed_in("operator")
    assert op.get(f"/api/purse/cards/{plain}").json()["purse"] is None
    assert 'id="no-purse"' in op.get(f"/purse/cards/{plain}").text
    assert op.api("POST", f"/api/purse/cards/{plain}/topups",
                  json={"wallet": 0, "amount": 100, "unit": "money"}).status_code == 404


def test_the_api_is_described(web_db: WebDb, signed_in: Client) -> None:
    paths = signed_in("operator").get("/api/openapi.json").json()["paths"]
    assert {"/api/purse/cards/{card_id}", "/api/purse/cards/{card_id}/topups", "/api/purse/flags",
            "/api/purse/sams/{sam_id}/{action}"} <= set(paths)
    assert not any(p.startswith("/purse/") for p in paths)


def test_every_flag_has_a_text() -> None:
    texts = catalogue()
    assert [name for name in FLAGS if f"purse.flag_{name}" not in texts] == []
