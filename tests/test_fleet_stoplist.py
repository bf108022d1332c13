"""registry.fleet.stoplist: each terminal's own stop-list entries and the offline limits in its signed
configuration, and the signature that makes the registry publish again when either changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from contracts.panseal import derive_stop_key, stop_entry
from contracts.signing import check_body
from registry.configs import ConfigIssuer, build_body
from registry.db import open_database
from registry.fleet import cards, stoplist
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import Card, Device, OfflineLimit
from registry.seed import apply_seed, load_seed

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")      # T-0001's in the seed
OTHER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
LOST, TAG = "7077009000000012", "U04C0FFEE112233"


@dataclass
class Env:
    sessions: sessionmaker[Session]
    keys: RegistryKeys
    tmp: Path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
        s.add(Device(id="T-0002", station_id="ST-001", pin_key_hex=keys.seal_device_key(OTHER_KEY)))
        s.commit()
    yield Env(sessions, keys, tmp_path)
    engine.dispose()


def _issue(s: Session, keys: RegistryKeys, number: str, medium: str = "chip") -> int:
    return cards.issue_card(s, keys, 1, number, medium=medium, expiry="2912", pin=None, actor="t", now=NOW,
                            activate=True).id


def test_a_lost_card_is_on_each_terminals_list_under_its_own_key(env: Env) -> None:
    with env.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        before = stoplist.signature(s)
        assert stoplist.stop_list_for(s, env.keys, device, NOW) == []
        card = _issue(s, env.keys, LOST)
        tag = _issue(s, env.keys, TAG, "tag")
        cards.move(s, card, "lost", actor="t", reason="driver called", now=NOW)
        cards.move(s, tag, "stolen", actor="t", reason="police report", now=NOW)
        s.commit()
        assert stoplist.signature(s) != before
        mine = stoplist.stop_list_for(s, env.keys, device, NOW)
        assert mine == sorted(stop_entry(derive_stop_key(PIN_KEY), n) for n in (LOST, TAG))
        other = s.get(Device, "T-0002")
        assert other is not None
        theirs = stoplist.stop_list_for(s, env.keys, other, NOW)
        assert theirs == sorted(stop_entry(derive_stop_key(OTHER_KEY), n) for n in (LOST, TAG))
        assert not set(mine) & set(theirs)
        body = build_body(s, device, env.keys, NOW)
        assert body["stop_list"] == mine
        check_body(body)                                    # what a terminal accepts


def test_an_active_card_is_not_on_the_list_and_a_card_past_its_expiry_leaves_it(env: Env) -> None:
    with env.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        _issue(s, env.keys, _luhn("707700300000001"))
        then = dt.datetime(2025, 10, 1)
        old = cards.issue_card(s, env.keys, 1, LOST, medium="chip", expiry="2511", pin=None, actor="t",
                               now=then, activate=True).id
        cards.move(s, old, "block", actor="t", reason="fraud", now=then)
        s.commit()
        assert len(stoplist.stop_list_for(s, env.keys, device, then)) == 1
        assert stoplist.stop_list_for(s, env.keys, device, NOW) == []       # expired 2025-11


def test_offline_limits_and_their_signature(env: Env) -> None:
    with env.sessions() as s:
        before = stoplist.signature(s)
        s.add(OfflineLimit(name="fleet", amount_cents=8000, volume_cl=5000))
        s.add(OfflineLimit(name="fleet_tag", amount_cents=4000, volume_cl=2500))
        s.commit()
        assert stoplist.signature(s) != before
        assert stoplist.offline_limits(s) == {"fleet": {"amount_cents": 8000, "volume_cl": 5000},
                                              "fleet_tag": {"amount_cents": 4000, "volume_cl": 2500}}
        device = s.get(Device, "T-0001")
        assert device is not None
        doc = ConfigIssuer(env.tmp / "registry", keys=env.keys).issue_config(s, device, NOW)
        assert doc["body"]["offline_limits"]["fleet"] == {"amount_cents": 8000, "volume_cl": 5000}


def test_a_list_longer_than_a_configuration_keeps_the_newest_and_raises_an_alarm(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with env.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        numbers = []
        for i in range(stoplist.MOST + 3):
            number = _luhn(f"70770020{i:07d}")
            numbers.append(number)
            cards.move(s, _issue(s, env.keys, number), "block", actor="t", reason="test", now=NOW)
        s.commit()
        found = stoplist.stop_list_for(s, env.keys, device, NOW)
    key = derive_stop_key(PIN_KEY)
    assert len(found) == stoplist.MOST
    assert stop_entry(key, numbers[-1]) in found and stop_entry(key, numbers[0]) not in found
    assert any(getattr(r, "alarm", "") == "stop_list_full" for r in caplog.records)


def _luhn(body: str) -> str:
    """body and its Luhn check digit (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def test_tags_stay_on_the_list_past_their_month_and_the_most_important_come_first(env: Env) -> None:
    """A tag has no expiry a terminal could read: refused or expired, it stays listed. The list's head is
    what matters most (a configuration carries 500): stolen before replaced, the newest change first."""
    then = dt.datetime(2026, 10, 1)
    with env.sessions() as s:
        stolen_tag = cards.issue_card(s, env.keys, 1, "U04A1B2C3D4E5F6", medium="tag", expiry="2611",
                                      pin=None, actor="t", now=then, activate=True).id
        old_tag = cards.issue_card(s, env.keys, 1, "U04112233445566", medium="tag", expiry="2610", pin=None,
                                   actor="t", now=then, activate=True).id
        replaced = _issue(s, env.keys, _luhn("707700500000001"))
        cards.move(s, stolen_tag, "stolen", actor="t", reason="police report", now=then)
        cards.reissue(s, env.keys, replaced, _luhn("707700500000002"), expiry="2912", pin=None, actor="t",
                      reason="damaged", now=NOW, activate=True)
        cards.expire_cards(s, NOW)
        s.commit()
        assert s.get(Card, old_tag).status == "expired"          # type: ignore[union-attr]
        listed = cards.stop_list_numbers(s, env.keys, NOW)
    assert listed[:1] == ["U04A1B2C3D4E5F6"]                   # stolen, past its month
    assert set(listed) == {"U04A1B2C3D4E5F6", "U04112233445566", _luhn("707700500000001")}
