"""The seven bank-card scenarios, run as a developer runs them: `forecourt sim --headless --scenario NAME
--json`, through real pcscd + vpcd, mosquitto, the DART pump line and the simulated acquirer on TCP."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_scenarios import sim_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VISA_PAN = "4761739001010010"


def bank(scenario: str) -> tuple[dict, dict]:
    doc = sim_json(scenario)
    assert doc["result"] == "ok", doc["failures"]
    text = json.dumps(doc)
    for secret in (VISA_PAN, "4761739001010143", "=3112201", "=3106201"):
        assert secret not in text, secret
    [sale] = doc["sales"]
    assert sale["kind"] == "bank"
    return doc, sale


def test_bank_happy_dda_online_pin() -> None:
    doc, sale = bank("bank-happy")
    assert (sale["status"] == "synced" and sale["amount_cents"] == 3318
            and sale["preauthorized_cents"] == 15000)
    emv = sale["emv"]
    assert emv["aid"] == "A0000000031010" and emv["oda"] == "dda" and emv["cvm_results"] == "420300"
    assert emv["cryptogram"] == "TC" and emv["arc"] == "00" and emv["issuer_authenticated"] is True
    assert len(emv["tvr"]) == 10 and len(emv["tsi"]) == 4
    [req] = doc["acquirer"]["requests"]
    assert req["t"] == "0100" and req["4"] == "000000015000" and req["22"] == "051" and req["18"] == "5542"
    assert req["2"] == "476173******0010" and "9F26" in req["55"]
    [adv] = doc["acquirer"]["advices"]
    assert adv["t"] == "0220" and adv["4"] == "000000003318" and adv["90"][4:10] == req["11"]
    assert doc["acquirer"]["settled_cents"] == sale["amount_cents"] == 3318     # the host settled the pump's
    assert req["61"] == "1000004002" and req["48"] == "R610510000"            # unattended, partial supported
    assert [d["code"] for d in doc["acquirer"]["decisions"]] == ["00", "00"]
    receipt = doc["receipt"]
    for text in ("476173******0010", "VISA CREDIT", "A0000000031010", "Chip", "PIN verified online",
                 sale["auth_code"], "150.00 EUR", "33.18 EUR", emv["tvr"], emv["tsi"], "20.00 L", "Diesel"):
        assert text in receipt, text
    assert doc["registry"]["kind"] == "bank" and doc["registry"]["amount_cents"] == 3318


def test_bank_partial_presets_the_pump_to_the_approved_amount() -> None:
    doc, sale = bank("bank-partial")
    assert sale["preauthorized_cents"] == 5000 and 4980 <= sale["amount_cents"] <= 5000
    assert sale["emv"]["partial"] is True and sale["emv"]["response_code"] == "10"
    [adv] = doc["acquirer"]["advices"]
    assert int(adv["4"]) == sale["amount_cents"] == doc["acquirer"]["settled_cents"]
    assert "Pre-authorized (partial)" in doc["receipt"]


def test_bank_declined_nothing_charged() -> None:
    doc, sale = bank("bank-declined")
    assert sale["status"] == "declined" and sale["reason"] == "insufficient_funds"
    assert sale["emv"]["cryptogram"] == "AAC" and sale["emv"]["arc"] == "51"
    assert doc["acquirer"]["advices"] == [] and doc["receipts"] == [] and doc["registry"] is None
    assert any("Insufficient funds" in line for line in doc["transcript"])


def test_bank_wrong_pin_checked_by_the_acquirer() -> None:
    doc, sale = bank("bank-wrong-pin")
    assert sale["reason"] == "wrong_pin" and sale["emv"]["response_code"] == "55"
    assert doc["acquirer"]["decisions"][0]["reason"] == "incorrect PIN"
    req = doc["acquirer"]["requests"][0]
    assert not {"52", "53", "62", "110"} & req.keys()            # the host keeps no PIN data in its record
    assert doc["receipts"] == []


def test_bank_host_timeout_declines_and_reverses() -> None:
    doc, sale = bank("bank-host-timeout")
    assert sale["status"] == "declined" and sale["reason"] == "host_timeout"
    assert sale["emv"]["arc"] == "Z3" and sale["emv"]["cryptogram"] == "AAC"   # unable to go online: declined
    [rev] = doc["acquirer"]["advices"]
    assert rev["t"] in ("0420", "0421") and rev["39"] == "68" and rev["4"] == "000000015000"
    assert any("No answer from bank" in line for line in doc["transcript"])
    assert doc["receipts"] == []


def test_bank_card_removed_reverses_the_approval() -> None:
    doc, sale = bank("bank-card-removed")
    assert sale["status"] == "declined" and sale["reason"] == "card_removed"
    [rev] = doc["acquirer"]["advices"]
    assert rev["t"] == "0420" and rev["39"] == "06"
    assert doc["acquirer"]["decisions"][0]["code"] == "00"          # the bank approved before the card left
    assert rev["37"] and rev["38"]                                  # so the reversal names that approval
    assert rev["90"][4:10] == doc["acquirer"]["requests"][0]["11"]
    assert any("Card removed" in line for line in doc["transcript"])


def test_bank_fallback_magstripe_is_flagged_in_the_message() -> None:
    doc, sale = bank("bank-fallback-magstripe")
    assert sale["emv"]["entry_mode"] == "801" and sale["status"] == "synced"
    [req] = doc["acquirer"]["requests"]
    assert req["22"] == "801" and "55" not in req and req["35"].startswith("<track 2")
    assert "2" not in req and "14" not in req
    [adv] = doc["acquirer"]["advices"]
    assert adv["22"] == "801" and "35" not in adv
    assert "Magstripe fallback" in doc["receipt"] and "AID" not in doc["receipt"]
