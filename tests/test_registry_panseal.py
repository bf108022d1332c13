"""registry.service.authorize with the card number sealed (contracts.panseal): the registry opens it with
the key derived from the device's PIN key, and a number that does not open declines without a PIN try."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import encipher_pinblock_iso_4
from test_registry_service import ACME, NOW, PIN_KEY, Env, sqlite_env

from contracts import messages as m
from contracts.cards import mask_pan
from contracts.messages import AuthAnswer
from contracts.panseal import derive_pan_key, seal_pan
from registry.models import Authorization
from registry.service import authorize

WHERE = {"terminal": "T-0001", "station": "ST-001"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def request(sealed: str, *, pin: str = "1234", request_id: str | None = None) -> dict[str, Any]:
    req = {"request_id": request_id or str(uuid.uuid4()), **WHERE, "pump": 1, "pan_sealed": sealed,
           "expiry": "2912", "pin_block": encipher_pinblock_iso_4(PIN_KEY, pin, ACME).hex().upper(),
           "medium": "chip", "prompts": {}}
    return m.decode(m.encode(req, m.AUTH_REQUEST), m.AUTH_REQUEST)


def send(env: Env, req: dict[str, Any]) -> AuthAnswer:
    with env.sessions() as s:
        return authorize(s, env.keys, req, NOW)


def sealed_for(request_id: str, key: bytes = PIN_KEY, pan: str = ACME) -> str:
    return seal_pan(derive_pan_key(key), pan, request_id=request_id, **WHERE)


def test_a_sealed_card_number_is_authorized_and_answered_masked(env: Env) -> None:
    rid = str(uuid.uuid4())
    req = request(sealed_for(rid), request_id=rid)
    assert ACME not in m.encode(req, m.AUTH_REQUEST).decode()     # the wire holds no card number
    answer = send(env, req)
    assert answer.approved and answer.card_masked == mask_pan(ACME)
    assert env.count(Authorization) == 1


def test_wrong_pin_with_a_sealed_number_still_counts(env: Env) -> None:
    rid = str(uuid.uuid4())
    answer = send(env, request(sealed_for(rid), pin="0000", request_id=rid))
    assert answer.reason is not None and answer.reason.value == "wrong_pin"
    assert env.card(ACME).pin_tries == 1


def _unsealable(env: Env, req: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="registry.fleet.authorize")
    answer = send(env, req)
    assert (answer.approved, answer.reason and answer.reason.value, answer.card_masked) == (
        False, "do_not_honour", None)
    rec = next(r for r in caplog.records if r.getMessage() == "authorization declined")
    assert vars(rec)["why"] == "pan_unsealable"
    card = env.card(ACME)
    assert (card.pin_tries, card.status) == (0, "active")         # a wrong PIN went with it: not counted
    assert env.count(Authorization) == 0


def test_a_number_sealed_under_another_key_declines_without_a_pin_try(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    rid = str(uuid.uuid4())
    _unsealable(env, request(sealed_for(rid, key=bytes(16)), pin="0000", request_id=rid), caplog)


def test_a_sealed_number_replayed_into_another_request_declines(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    captured = sealed_for(str(uuid.uuid4()))                       # seen on the broker in another request
    _unsealable(env, request(captured, pin="0000"), caplog)


def test_a_tampered_sealed_number_declines(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    rid = str(uuid.uuid4())
    sealed = sealed_for(rid)
    tampered = sealed[:-1] + ("0" if sealed[-1] != "0" else "1")
    _unsealable(env, request(tampered, pin="0000", request_id=rid), caplog)


def test_a_sealed_number_for_another_station_declines(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    rid = str(uuid.uuid4())
    sealed = seal_pan(derive_pan_key(PIN_KEY), ACME, request_id=rid, terminal="T-0001", station="ST-002")
    _unsealable(env, request(sealed, pin="0000", request_id=rid), caplog)
