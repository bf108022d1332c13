"""The chip purse's service requests through the registry's service desk (registry.service_desk.answer),
each request and answer through contracts.service_messages' schemas as they travel: an online contact offers
an ordered top-up, the card's INITIALIZE LOAD gets the load MAC, the records forwarded count once, an
advice makes the issuer's completion, and the applied scripts close."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from typing import Any

import test_purse_ingest
from sqlalchemy.orm import Session
from test_purse_ingest import NOW, SAM, World

from contracts import service_messages as sv
from contracts.purse_keys import Purpose, load_message, verify_mac
from registry.models import Device, Station
from registry.purse.topups import order_topup
from registry.service_desk import answer

sm, world = test_purse_ingest.sm, test_purse_ingest.world      # fixtures: a fresh SQLite registry


def ask(w: World, op: str, **fields: Any) -> dict[str, Any]:
    req = sv.decode_request(sv.encode_request({"request_id": str(uuid.uuid4()), "terminal": "T-0001",
                                               "station": "ST-001", "op": op, **fields}))
    with w.sm() as s:
        _device(s)
        doc = answer(s, w.keys, req, NOW)
    return sv.decode_response(sv.encode_response(doc))


def _device(s: Session) -> None:
    if s.get(Device, "T-0001") is None:
        if s.get(Station, "ST-001") is None:
            s.add(Station(id="ST-001", name="Main street"))
            s.flush()
        s.add(Device(id="T-0001", station_id="ST-001", pin_key_hex="00" * 16, status="active"))
        s.commit()


def contact(w: World, blocked: bool = False, **pending: int) -> dict[str, Any]:
    return ask(w, "purse_contact", purse_id=w.purse_id.hex(), counter=w.card.counter, blocked=blocked,
               **pending)


def test_an_ordered_top_up_is_offered_granted_and_confirmed_once(world: World) -> None:
    assert contact(world)["result"] == {"scripts": [], "loads": [], "topups": []}
    with world.sm() as s:
        order_topup(s, world.purse_id, 0, 2500, actor="test", now=NOW)
        s.commit()
    (offer,) = contact(world)["result"]["topups"]
    assert (offer["wallet"], offer["amount"]) == (0, 2500)
    request = world.card.load_request(0, 2500, load_id=bytes.fromhex(offer["load_id"]))
    fields = {"load_id": request.load_id.hex(), "purse_id": world.purse_id.hex(), "wallet": 0,
              "counter": request.counter, "amount": 2500, "unit": int(request.unit),
              "balance": request.balance, "key_version": 1, "mac": request.mac.hex()}
    grant = ask(world, "purse_load", **fields)
    assert grant["ok"] and grant["result"]["granted"]
    message = load_message(world.purse_id, key_version=grant["result"]["key_version"], wallet=0,
                           counter=request.counter, amount=2500, unit=request.unit, load_id=request.load_id)
    assert verify_mac(world.issuer.card_key(world.purse_id, Purpose.LOAD, 1), message,
                      bytes.fromhex(grant["result"]["mac"]))
    forged = ask(world, "purse_load", **(fields | {"amount": 9000}))
    assert forged["ok"] and not forged["result"]["granted"]                 # the card's MAC names 2500
    record = world.card.apply_load(0, 2500)
    sent = ask(world, "purse_records", sam_id=SAM.hex(), items=[{"record": record.hex()}])
    assert sent["result"] == {"counted": 1, "duplicate": 0, "flagged": 0}
    again = ask(world, "purse_records", sam_id=SAM.hex(), items=[{"record": record.hex()}])
    assert again["result"] == {"counted": 0, "duplicate": 1, "flagged": 0}
    assert contact(world)["result"]["topups"] == []
    assert world.balance(world.chip0) == world.card.balances[0]
    world.sound()


def test_an_advice_becomes_the_issuers_completion_at_the_next_contact(world: World) -> None:
    sale = str(uuid.uuid4())
    advice = {"purse_id": world.purse_id.hex(), "counter": 7, "amount": 1500, "sale_id": sale}
    assert ask(world, "purse_records", sam_id=SAM.hex(), items=[], advices=[advice])["ok"]
    assert contact(world)["result"]["scripts"] == []                     # no pending slot: no completion
    (script,) = contact(world, pending=7)["result"]["scripts"]
    message = bytes.fromhex(script["message"])
    assert message[0] == 0x41 and message[-16:] == struct.pack(">II8s", 7, 1500, SAM)
    done = ask(world, "purse_applied", purse_id=world.purse_id.hex(), script_ids=[script["script_id"]])
    assert done["result"] == {"applied": 1}
    assert contact(world, pending=7)["result"]["scripts"] == []


def test_a_terminal_of_another_station_is_refused(world: World) -> None:
    req = {"request_id": str(uuid.uuid4()), "terminal": "T-0001", "station": "ST-999", "op": "purse_contact",
           "purse_id": world.purse_id.hex(), "counter": 0, "blocked": False}
    with world.sm() as s:
        _device(s)
        doc = answer(s, world.keys, sv.decode_request(sv.encode_request(req)), NOW + dt.timedelta(seconds=1))
    assert not doc["ok"] and doc["reason"] == sv.ServiceReason.NOT_ALLOWED
