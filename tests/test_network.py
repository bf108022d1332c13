"""registry.network: stations, products and nozzles added and edited, each change audited, and a value the
signed configuration could not carry refused at once."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.signing import check_body
from registry import network
from registry.configs import build_body
from registry.db import open_database
from registry.models import AuditEntry, Device

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Session]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as session:
        yield session
    engine.dispose()


def _audits(s: Session) -> list[tuple[str, str, str, dict[str, object]]]:
    rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    return [(r.actor, r.action, r.subject, json.loads(r.detail)) for r in rows]


def test_a_station_with_products_and_pumps_makes_a_valid_configuration(s: Session) -> None:
    network.add_station(s, "ST-9", "Ninth Street", currency="eur", timezone="Europe/Madrid", actor="web:op",
                        now=NOW)
    network.add_product(s, "DSL", "Diesel", code3="019", actor="web:op", now=NOW)
    network.add_product(s, "ADB", "AdBlue", group="adblue", actor="web:op", now=NOW)
    network.add_nozzle(s, "ST-9", 1, 1, "DSL", 1659, actor="web:op", now=NOW)
    network.add_nozzle(s, "ST-9", 1, 2, "ADB", 899, actor="web:op", now=NOW)
    network.add_nozzle(s, "ST-9", 2, 1, "DSL", 1659, actor="web:op", now=NOW)
    s.add(Device(id="T-9", station_id="ST-9", pin_key_hex="00" * 16))
    s.commit()
    body = build_body(s, s.get(Device, "T-9"))      # type: ignore[arg-type]
    body["registry_bundle_key"] = ""
    check_body(body)
    assert body["currency"] == "EUR" and body["timezone"] == "Europe/Madrid"
    assert body["product_groups"] == {"ADB": "adblue", "DSL": "fuel"}
    assert [(p["pump"], p["nozzle"], p["product"], p["price_milli"]) for p in body["prices"]] == [
        (1, 1, "DSL", 1659), (1, 2, "ADB", 899), (2, 1, "DSL", 1659)]
    actions = [(a[0], a[1], a[2]) for a in _audits(s)]
    assert actions[0] == ("web:op", "station.create", "station:ST-9")
    assert ("web:op", "nozzle.create", "station:ST-9") in actions
    # the audit's time is naive UTC, as every other table's
    assert s.scalars(select(AuditEntry.at)).first() == NOW.replace(tzinfo=None)


def test_edits_are_audited_with_what_was_before_and_a_no_change_is_not(s: Session) -> None:
    network.add_station(s, "ST-9", "Ninth", actor="op", now=NOW)
    network.add_product(s, "DSL", "Diesel", actor="op", now=NOW)
    noz = network.add_nozzle(s, "ST-9", 1, 1, "DSL", 1659, actor="op", now=NOW)
    network.edit_station(s, "ST-9", name="Ninth Street", currency="EUR", timezone="UTC", actor="op2", now=NOW)
    network.edit_station(s, "ST-9", name="Ninth Street", currency="EUR", timezone="UTC", actor="op2", now=NOW)
    network.edit_product(s, "DSL", name="Diesel B7", code3="019", group="fuel", actor="op2", now=NOW)
    network.edit_nozzle(s, noz.id, product_code="DSL", price_milli=1700, actor="op2", now=NOW)
    s.commit()
    edits = [a for a in _audits(s) if a[0] == "op2"]
    assert [a[1] for a in edits] == ["station.edit", "product.edit", "nozzle.edit"]
    assert edits[0][3]["before"] == {"name": "Ninth", "currency": "EUR", "timezone": "UTC"}
    assert edits[2][3]["before"] == {"product": "DSL", "price_milli": 1659}
    assert edits[2][3]["price_milli"] == 1700
    assert network.nozzle(s, noz.id).price_milli == 1700


REFUSED: list[tuple[Callable[[Session], object], str]] = [
    (lambda s: network.add_station(s, "ST 9", "x", actor="a", now=NOW), "station"),
    (lambda s: network.add_station(s, "ST-1", "x", actor="a", now=NOW), "station"),
    (lambda s: network.add_station(s, "ST-9", "x", currency="EURO", actor="a", now=NOW), "currency"),
    (lambda s: network.add_station(s, "ST-9", "x", timezone="Mars/Olympus", actor="a", now=NOW), "timezone"),
    (lambda s: network.add_station(s, "ST-9", "a\nb", actor="a", now=NOW), "name"),
    (lambda s: network.add_product(s, "DSL", "again", actor="a", now=NOW), "product"),
    (lambda s: network.add_product(s, "X1", "x", code3="19", actor="a", now=NOW), "code3"),
    (lambda s: network.add_product(s, "X1", "x", group="Fuel", actor="a", now=NOW), "group"),
    (lambda s: network.add_nozzle(s, "ST-1", 33, 1, "DSL", 1000, actor="a", now=NOW), "pump"),
    (lambda s: network.add_nozzle(s, "ST-1", 1, 16, "DSL", 1000, actor="a", now=NOW), "nozzle"),
    (lambda s: network.add_nozzle(s, "ST-1", 1, 1, "DSL", 1000, actor="a", now=NOW), "nozzle"),
    (lambda s: network.add_nozzle(s, "ST-1", 1, 2, "NOPE", 1000, actor="a", now=NOW), "product"),
    (lambda s: network.add_nozzle(s, "ST-1", 1, 2, "DSL", 0, actor="a", now=NOW), "price_milli"),
    (lambda s: network.add_nozzle(s, "ST-1", 1, 2, "DSL", 1_000_000, actor="a", now=NOW), "price_milli"),
    (lambda s: network.add_nozzle(s, "ST-2", 1, 2, "DSL", 1000, actor="a", now=NOW), "station"),
]


def test_what_a_configuration_cannot_carry_is_refused(s: Session) -> None:
    network.add_station(s, "ST-1", "First", actor="a", now=NOW)
    network.add_product(s, "DSL", "Diesel", actor="a", now=NOW)
    network.add_nozzle(s, "ST-1", 1, 1, "DSL", 1659, actor="a", now=NOW)
    s.commit()
    for call, key in REFUSED:
        with pytest.raises(ConfigError) as caught:
            call(s)
        assert caught.value.context.get("key") == key
        s.rollback()


def test_listing_by_scope(s: Session) -> None:
    for sid in ("ST-2", "ST-1", "ST-3"):
        network.add_station(s, sid, sid, actor="a", now=NOW)
    assert [r.id for r in network.stations(s)] == ["ST-1", "ST-2", "ST-3"]
    assert [r.id for r in network.stations(s, {"ST-3", "ST-1"})] == ["ST-1", "ST-3"]
    assert network.stations(s, set()) == []
