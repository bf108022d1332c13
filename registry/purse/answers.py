"""The registry's answer to each chip purse payload (contracts.purse_messages), payload in, payload out: what
the MQTT wiring calls (registry.server routes a topic here, decodes with the schema, commits, publishes).

Each function takes a payload decode() accepted, works in the caller's session (nothing commits here) and
returns the answer payload (or None where the terminal expects none). A payload that names another terminal
than the topic it came on is the wiring's to refuse (registry.server._answerable), as for authorizations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from contracts.purse_keys import Unit
from registry.purse.bundle import ingest_upload
from registry.purse.issuer import IssuerKeys
from registry.purse.loads import LoadRequest, authorize_load, confirm_load
from registry.purse.refunds import refunds_for
from registry.purse.scripts import record_advice, script_applied, scripts_for

__all__ = ["on_advice", "on_load_confirm", "on_load_request", "on_records", "on_scripts_applied",
           "on_scripts_request"]


def on_records(s: Session, issuer: IssuerKeys, doc: Mapping[str, Any], *, now: dt.datetime) -> dict[str, Any]:
    """PURSE_RECORDS -> PURSE_RECORDS_ACK (the terminal may drop what it sent once acknowledged: every
    record is stored, counted or flagged)."""
    report = ingest_upload(s, issuer, doc, now=now)
    flagged = report.stored - report.counted
    return {"terminal": doc["terminal"], "counted": report.counted, "duplicate": report.duplicate,
            "flagged": flagged}


def on_load_request(s: Session, issuer: IssuerKeys, doc: Mapping[str, Any], *,
                    now: dt.datetime) -> dict[str, Any]:
    """LOAD_REQUEST -> LOAD_GRANT."""
    request = LoadRequest(load_id=bytes.fromhex(doc["load_id"]), purse_id=bytes.fromhex(doc["purse_id"]),
                          wallet=doc["wallet"], counter=doc["counter"], amount=doc["amount"],
                          unit=Unit(doc["unit"]), balance=doc["balance"], key_version=doc["key_version"],
                          mac=bytes.fromhex(doc["mac"]), terminal=doc["terminal"])
    grant = authorize_load(s, issuer, request, now=now)
    return {"load_id": doc["load_id"], "granted": grant.granted, "reason": grant.reason,
            "mac": grant.mac.hex(), "key_version": grant.key_version, "counter": grant.counter}


def on_load_confirm(s: Session, issuer: IssuerKeys, doc: Mapping[str, Any], *, now: dt.datetime) -> str:
    """LOAD_CONFIRM: the card's LOAD record through ingest; the grant's status (no answer payload)."""
    status, _ = confirm_load(s, issuer, bytes.fromhex(doc["load_id"]), bytes.fromhex(doc["record"]),
                             source=f"mqtt:{doc['terminal']}", now=now)
    return status


def on_scripts_request(s: Session, issuer: IssuerKeys, doc: Mapping[str, Any], *,
                       now: dt.datetime) -> dict[str, Any]:
    """SCRIPTS_REQUEST -> SCRIPTS_ANSWER: the scripts for this contact, in order, then the refund loads.
    A completion goes only to a card that reports its pending slot ("pending", the service desk's
    purse_contact; a request without it reports none), the advice of the slot's sale ("pending_sale")."""
    purse = bytes.fromhex(doc["purse_id"])
    scripts = scripts_for(s, issuer, purse, doc["counter"], now=now, chip_blocked=doc["blocked"],
                          pending=doc.get("pending"), pending_sale=doc.get("pending_sale"),
                          terminal=doc["terminal"])
    loads = refunds_for(s, issuer, purse, doc["counter"] + len(scripts), now=now)
    return {"request_id": doc["request_id"], "purse_id": doc["purse_id"],
            "scripts": [{"script_id": x.script_id, "op": int(x.op), "counter": x.counter,
                         "message": x.message.hex(), "mac": x.mac.hex()} for x in scripts],
            "loads": [{"load_id": x.load_id.hex(), "wallet": x.wallet, "amount": x.amount,
                       "unit": int(x.unit), "counter": x.counter, "key_version": x.key_version,
                       "mac": x.mac.hex()} for x in loads]}


def on_scripts_applied(s: Session, doc: Mapping[str, Any], *, now: dt.datetime) -> int:
    """SCRIPTS_APPLIED: how many of the reported scripts were open ones of this purse issued to this
    terminal."""
    purse = bytes.fromhex(doc["purse_id"])
    return sum(script_applied(s, purse, ident, now=now, terminal=doc["terminal"])
               for ident in doc["script_ids"])


def on_advice(s: Session, doc: Mapping[str, Any], *, now: dt.datetime) -> None:
    """PURSE_ADVICE: the first terminal's figure for a reservation the card left pending."""
    record_advice(s, bytes.fromhex(doc["purse_id"]), doc["counter"], doc["amount"], terminal=doc["terminal"],
                  now=now)
