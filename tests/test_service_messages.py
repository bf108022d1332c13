"""Service requests and answers (contracts.service_messages): each operation takes its own fields only, and an
answer's result must fit its operation."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import service_messages as sv
from contracts.errors import MessageError
from contracts.panseal import derive_pan_key, seal_pan

RID = "0f8fad5b-d9cb-469f-a165-70867728950e"
BASE = {"request_id": RID, "terminal": "T-0001", "station": "ST-001"}
SEALED = seal_pan(derive_pan_key(bytes(16)), "7077001000000019", request_id=RID, terminal="T-0001",
                  station="ST-001")
TICKET = "1765000000." + "0123456789abcdef" * 2
ARGS: dict[str, dict[str, Any]] = {
    "loyalty_lookup": {"card_sealed": SEALED},
    "loyalty_redeem": {"card_sealed": SEALED, "medium": "tag", "attendant": "A-1", "ticket": TICKET,
                       "reward": 3, "handed_over": True},
    "loyalty_convert": {"card_sealed": SEALED, "attendant": "A-1", "ticket": TICKET, "points": 500,
                        "target_sealed": SEALED, "target_medium": "stripe"},
    "voucher_redeem": {"code_sealed": SEALED, "pump": 2},
    "voucher_release": {"voucher": 7, "request": RID},
    "attendant_signin": {"card_sealed": SEALED, "pin_block": "0" * 32},
    "topup": {"card_sealed": SEALED, "attendant": "A-1", "ticket": TICKET, "amount_cents": 5000,
              "wallet": 12},
    "shift_close": {"shift": 3, "attendant": "A-1", "opened_at": "2026-12-01T06:00:00Z",
                    "closed_at": "2026-12-01T14:00:00Z", "after_seq": 40, "last_seq": 42,
                    "total": {"sales": 2, "volume_cl": 3000, "amount_cents": 4977, "charged_cents": 4977},
                    "by_product": {"B7": {"sales": 2, "volume_cl": 3000, "amount_cents": 4977,
                                          "charged_cents": 4977}},
                    "by_payment": {}, "by_attendant": {}, "topups_cents": 0, "cash_cents": 0,
                    "actions": [{"at": "2026-12-01T07:00:00Z", "attendant": "A-1", "action": "reprint",
                                 "subject": "sale:1"}]},
    # the chip purse (contracts.purse_service)
    "sam_enrol": {"sam_id": "5a4d000000000001", "sam_public_key": "02" + "ab" * 32},
    "purse_records": {"sam_id": "5a4d000000000001", "items": [{"record": "50" * 60, "sam_seq": 3,
                                                                "sam_mac": "00" * 16}],
                      "advices": [{"purse_id": "7077000000000042", "counter": 4, "amount": 1500,
                                   "sale_id": RID}]},
    "purse_contact": {"purse_id": "7077000000000042", "counter": 4, "blocked": False},
    "purse_load": {"load_id": "11" * 16, "purse_id": "7077000000000042", "wallet": 0, "counter": 4,
                   "amount": 2500, "unit": 1, "balance": 700, "key_version": 1, "mac": "22" * 16},
    "purse_applied": {"purse_id": "7077000000000042", "script_ids": [5, 6]},
}
RESULTS: dict[str, dict[str, Any]] = {
    "loyalty_lookup": {"masked": "707700******0019", "balance": 120, "tier": "silver", "pooled": False,
                       "history": [{"date": "2026-12-01", "time": "10:00:00", "station": "ST-001",
                                    "points": 40, "kind": "earn"}],
                       "rewards": [{"reward": 1, "name": "Coffee", "points": 100, "stock": 4}]},
    "loyalty_redeem": {"order": 9, "status": "handed_over", "balance": 20},
    "voucher_redeem": {"voucher": 7, "product": "DIESEL", "volume_cl": 2000},
    "voucher_release": {},
    "attendant_signin": {"attendant": "A-1", "name": "Ann", "role": "attendant", "ticket": TICKET},
    "loyalty_convert": {"masked": "707700******0019", "points": 500, "credit_cents": 500, "balance": 20},
    "topup": {"masked": "707700******0019", "paid_cents": 10000, "bonus_cents": 1000, "balance_cents": 11000},
    "shift_close": {"stored": True},
    "sam_enrol": {"sam_id": "5a4d000000000001", "certificate": "01" * 112, "ca_public_key": "03" + "cd" * 32,
                  "key_version": 1, "sam_key_sealed": "ee" * 66, "expiry": 1_950_000_000},
    "purse_records": {"counted": 1, "duplicate": 0, "flagged": 0},
    "purse_contact": {"scripts": [{"script_id": 5, "op": 1, "counter": 4, "message": "41" * 17,
                                   "mac": "33" * 16}],
                      "loads": [], "topups": [{"load_id": "11" * 16, "wallet": 0, "amount": 2500}]},
    "purse_load": {"load_id": "11" * 16, "granted": True, "reason": "", "mac": "44" * 16, "key_version": 1,
                   "counter": 4},
    "purse_applied": {"applied": 2},
}


def test_every_operation_is_covered_here() -> None:
    assert set(ARGS) == set(sv.OPS) == set(RESULTS) == set(sv.RESULTS)


@pytest.mark.parametrize("op", sorted(sv.OPS))
def test_a_request_round_trips_with_its_own_fields(op: str) -> None:
    doc = BASE | {"op": op} | ARGS[op]
    assert sv.decode_request(sv.encode_request(doc)) == doc


@pytest.mark.parametrize("op", sorted(sv.OPS))
def test_a_request_missing_a_field_or_carrying_another_operations_is_refused(op: str) -> None:
    doc = BASE | {"op": op} | ARGS[op]
    required = [k for k in ARGS[op] if k not in ("medium", "target_medium", "wallet", "advices")]
    with pytest.raises(MessageError, match="lacks"):
        sv.encode_request({k: v for k, v in doc.items() if k != required[0]})
    stranger = "voucher" if op != "voucher_release" else "pump"
    raw = sv.encode_request(doc).replace(b'"op"', f'"{stranger}":1,"op"'.encode())
    with pytest.raises(MessageError, match="unknown fields"):
        sv.decode_request(raw)


def test_an_unknown_operation_is_refused_both_ways() -> None:
    with pytest.raises(MessageError, match="op"):
        sv.encode_request(BASE | {"op": "drop_tables"})
    raw = sv.encode_request(BASE | {"op": "voucher_release", "voucher": 1, "request": RID}).replace(
        b"voucher_release", b"drop_tables")
    with pytest.raises(MessageError):
        sv.decode_request(raw)


@pytest.mark.parametrize("op", sorted(sv.OPS))
def test_an_answer_round_trips_and_its_result_must_fit_the_operation(op: str) -> None:
    doc = {"request_id": RID, "op": op, "ok": True, "reason": "", "result": RESULTS[op]}
    assert sv.decode_response(sv.encode_response(doc)) == doc
    if RESULTS[op]:
        broken = dict(RESULTS[op])
        broken.pop(next(iter(broken)))
        with pytest.raises(MessageError):
            sv.encode_response(doc | {"result": broken})


def test_a_refusal_carries_no_result_and_may_say_the_tries_left() -> None:
    doc = {"request_id": RID, "op": "attendant_signin", "ok": False, "reason": sv.ServiceReason.WRONG_PIN,
           "result": {}, "tries_left": 2}
    assert sv.decode_response(sv.encode_response(doc))["tries_left"] == 2
    with pytest.raises(MessageError, match="no result"):
        sv.encode_response(doc | {"result": RESULTS["attendant_signin"]})


def test_history_is_at_most_thirty_movements_and_each_is_checked() -> None:
    result = dict(RESULTS["loyalty_lookup"])
    row = result["history"][0]
    doc = {"request_id": RID, "op": "loyalty_lookup", "ok": True, "reason": ""}
    sv.encode_response(doc | {"result": result | {"history": [row] * 30}})
    with pytest.raises(MessageError):
        sv.encode_response(doc | {"result": result | {"history": [row] * 31}})
    with pytest.raises(MessageError):
        sv.encode_response(doc | {"result": result | {"history": [row | {"date": "yesterday"}]}})


@pytest.mark.parametrize("change", [
    {"total": {"sales": 2, "volume_cl": -1, "amount_cents": 0, "charged_cents": 0}},
    {"by_product": {"B 7": {"sales": 0, "volume_cl": 0, "amount_cents": 0, "charged_cents": 0}}},
    {"by_payment": {"cash": {"sales": 0}}},
    {"actions": [{"at": "2026-12-01 07:00", "attendant": "A-1", "action": "reprint", "subject": ""}]},
    {"actions": [{"at": "2026-12-01T07:00:00Z", "attendant": "A-1", "action": "reprint", "subject": "",
                  "detail": {"pin": "1234"}}]},
    {"closed_at": "yesterday"},
])
def test_a_z_report_with_a_malformed_part_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        sv.encode_request(BASE | {"op": "shift_close"} | ARGS["shift_close"] | change)


@pytest.mark.parametrize("ticket", ["1765000000", "1765000000." + "0" * 31, "176500000." + "0" * 32,
                                    "1765000000." + "A" * 32, "1765000000." + "0" * 33, ""])
def test_an_attendants_request_carries_a_well_formed_ticket(ticket: str) -> None:
    for op in ("loyalty_redeem", "loyalty_convert", "topup"):
        with pytest.raises(MessageError):
            sv.encode_request(BASE | {"op": op} | ARGS[op] | {"ticket": ticket})
    with pytest.raises(MessageError):
        sv.encode_response({"request_id": RID, "op": "attendant_signin", "ok": True, "reason": "",
                            "result": RESULTS["attendant_signin"] | {"ticket": ticket}})


def test_a_topup_names_its_credit_or_leaves_it_to_the_registry() -> None:
    doc = BASE | {"op": "topup"} | {k: v for k, v in ARGS["topup"].items() if k != "wallet"}
    assert "wallet" not in sv.decode_request(sv.encode_request(doc))
    with pytest.raises(MessageError):
        sv.encode_request(doc | {"wallet": 0})


def test_a_release_names_the_redeem_request_that_took_the_voucher() -> None:
    with pytest.raises(MessageError, match="lacks"):
        sv.encode_request(BASE | {"op": "voucher_release", "voucher": 7})
    with pytest.raises(MessageError):
        sv.encode_request(BASE | {"op": "voucher_release", "voucher": 7, "request": "not-a-uuid"})
