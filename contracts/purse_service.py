"""The chip purse's service requests (contracts.service_messages carries them, one request and its answer
on the terminal's inbox, under the terminal's own TLS identity): a SAM's enrolment, the records a terminal
forwards, an online contact's scripts, refunds and top-ups, a load's MAC, the scripts applied.

Field checks reuse contracts.purse_messages' (lower-case hex bytes, 32-bit counters); the terminal is the
request's own, never a field. docs/chip-wallets.md and docs/chip-wallet-registry.md say what each carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts import purse_messages as pm
from contracts.messages import Check, Omissible, int_range, matching

__all__ = ["MAX_ADVICES", "PURSE_OPS", "PURSE_RESULTS", "SAM_TAKEN"]

SAM_TAKEN = "sam_taken"            # a refusal reason: the SAM is fitted to another active terminal
MAX_ADVICES = 50                   # advices in one purse_records request

_HEX8, _HEX16 = matching(r"[0-9a-f]{16}"), matching(r"[0-9a-f]{32}")
_U32 = int_range(0, 2**32 - 1)
_UUID = matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ADVICE: Mapping[str, Check] = {"purse_id": _HEX8, "counter": _U32, "amount": _U32, "sale_id": _UUID}


def _advices(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_ADVICES and all(
        isinstance(a, dict) and set(a) == set(_ADVICE) and all(_ADVICE[k](a[k]) for k in a) for a in v)


def _topups(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= 8 and all(
        isinstance(t, dict) and set(t) == {"load_id", "wallet", "amount"} and _HEX16(t["load_id"])
        and int_range(0, 7)(t["wallet"]) and int_range(1, 2**32 - 1)(t["amount"]) for t in v)


def _items(v: Any) -> bool:
    """Records, or none: a forward may carry only advices."""
    return v == [] or pm.PURSE_RECORDS["items"](v)


PURSE_OPS: Mapping[str, Mapping[str, Check]] = {
    # a SAM asks for its certificate and its sealed MAC key (provisioning.sam)
    "sam_enrol": {"sam_id": _HEX8, "sam_public_key": matching(r"0[23][0-9a-f]{64}")},
    # signed records (this terminal's SAM's MAC on those it made) and the figures of reservations cards left
    # pending here (the issuer's completion at the card's next online contact)
    "purse_records": {"sam_id": _HEX8, "items": _items, "advices": Omissible(_advices)},
    # a card in the reader: the scripts, refund loads and top-ups for it now
    # (pending, pending_sale: the counter and sale id of the card's pending slot; absent when it has none)
    "purse_contact": {"purse_id": _HEX8, "counter": _U32, "blocked": lambda v: isinstance(v, bool),
                      "pending": Omissible(_U32), "pending_sale": Omissible(_UUID)},
    # the card's INITIALIZE LOAD for a top-up the contact offered
    "purse_load": {k: c for k, c in pm.LOAD_REQUEST.items() if k != "terminal"},
    # the scripts the card applied
    "purse_applied": {k: c for k, c in pm.SCRIPTS_APPLIED.items() if k != "terminal"},
}
PURSE_RESULTS: Mapping[str, Mapping[str, Check]] = {
    "sam_enrol": {"sam_id": _HEX8, "certificate": matching(r"[0-9a-f]{224}"),
                  "ca_public_key": matching(r"0[23][0-9a-f]{64}"), "key_version": int_range(1, 255),
                  "sam_key_sealed": matching(r"([0-9a-f]{2}){66,178}"), "expiry": _U32},
    "purse_records": {"counted": _U32, "duplicate": _U32, "flagged": _U32},
    "purse_contact": {"scripts": pm.SCRIPTS_ANSWER["scripts"], "loads": pm.SCRIPTS_ANSWER["loads"],
                      "topups": _topups},
    "purse_load": {k: c for k, c in pm.LOAD_GRANT.items()},
    "purse_applied": {"applied": int_range(0, 16)},
}
