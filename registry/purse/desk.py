"""The chip purse's service requests, registry side (contracts.purse_service): each one a function of the
service desk's request (registry.service_desk_ask.Ask: the session, the keys, the terminal's device row,
the checked request, the time); the desk commits. The terminal is always the request's own (its TLS
identity), never a field it sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contracts.service_messages import ServiceReason
from registry.purse import answers
from registry.purse.enrol import answer_sam_enrolment
from registry.purse.issuer import IssuerKeys
from registry.purse.scripts import advising_sam, record_advice
from registry.purse.topups import offers
from registry.service_desk_ask import Ask, Refused

__all__ = ["OPERATIONS"]


def _issuer(a: Ask) -> IssuerKeys:
    return IssuerKeys.load(a.s, a.keys, now=a.now)


def _doc(a: Ask) -> dict[str, Any]:
    return {**a.req, "terminal": a.device.id}


def purse_records(a: Ask) -> dict[str, Any]:
    """Records forwarded (counted once by purse and counter) and advices of reservations left pending; the
    sam_id must be an active SAM of this terminal (else refused NOT_ALLOWED)."""
    doc = _doc(a)
    if advising_sam(a.s, a.device.id, bytes.fromhex(doc["sam_id"])) is None:
        raise Refused(ServiceReason.NOT_ALLOWED, "sam_id is not an active SAM of this terminal")
    result = {"counted": 0, "duplicate": 0, "flagged": 0}
    if doc["items"]:
        ack = answers.on_records(a.s, _issuer(a), {**doc, "kind": "purse_records"}, now=a.now)
        result = {k: ack[k] for k in result}
    for advice in doc.get("advices", []):       # recorded for the terminal's active SAM (or refused)
        record_advice(a.s, bytes.fromhex(advice["purse_id"]), advice["counter"], advice["amount"],
                      terminal=a.device.id, now=a.now, sam_id=bytes.fromhex(doc["sam_id"]),
                      sale_id=advice["sale_id"])
    return result


def purse_contact(a: Ask) -> dict[str, Any]:
    """The scripts and refund loads for the card now, then the top-ups ordered for it, each at the counter
    the card will be at when the terminal applies it."""
    doc = _doc(a)
    answer = answers.on_scripts_request(a.s, _issuer(a), doc, now=a.now)
    at = doc["counter"] + len(answer["scripts"]) + len(answer["loads"])
    topups = [{"load_id": o.load_id.hex(), "wallet": o.wallet, "amount": o.amount}
              for o in offers(a.s, bytes.fromhex(doc["purse_id"]), at)]
    return {"scripts": answer["scripts"], "loads": answer["loads"], "topups": topups}


def purse_load(a: Ask) -> dict[str, Any]:
    return answers.on_load_request(a.s, _issuer(a), _doc(a), now=a.now)


def purse_applied(a: Ask) -> dict[str, Any]:
    return {"applied": answers.on_scripts_applied(a.s, _doc(a), now=a.now)}


def sam_enrol(a: Ask) -> dict[str, Any]:
    return answer_sam_enrolment(a.s, _issuer(a), _doc(a), a.now)


OPERATIONS: Mapping[str, Callable[[Ask], dict[str, Any]]] = {
    "purse_records": purse_records, "purse_contact": purse_contact, "purse_load": purse_load,
    "purse_applied": purse_applied, "sam_enrol": sam_enrol}
