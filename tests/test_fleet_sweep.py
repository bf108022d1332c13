"""registry.fleet.sweep: expired cards marked, expired prepaid wallets emptied, one expiry movement a day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db import open_database
from registry.fleet import ledger
from registry.fleet.sweep import sweep
from registry.keys import load_or_create_keys
from registry.models import Account, Authorization, Card, Device, Movement, Station, Wallet

NOW = dt.datetime(2026, 12, 1, 12, 0)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "keys.json")
    with sessions() as s:
        s.add(Account(id=1, name="ACME", timezone="Europe/Berlin"))
        s.add(Wallet(id=1, account_id=1, allowed_products="", unit="money", mode="prepaid",
                     expires_on=dt.date(2026, 11, 30)))
        s.add(Wallet(id=2, account_id=1, allowed_products="", unit="money", mode="prepaid",
                     expires_on=dt.date(2026, 12, 1)))
        for number, expiry in (("7077001000000019", "2611"), ("7077001000000027", "2612")):
            token = keys.token(number)
            s.add(Card(token=token, masked=number[-4:].rjust(16, "*"), account_id=1, expiry=expiry,
                       pin_verifier="", status="active"))
        s.flush()
        for wallet in (1, 2):
            w = s.get(Wallet, wallet)
            assert w is not None
            ledger.topup(s, w, 5000, key=f"t{wallet}", at=NOW - dt.timedelta(days=30), actor="t", reason="t")
        s.commit()
        yield s
    engine.dispose()


def test_expired_cards_and_wallets_are_swept_once(session: Session) -> None:
    session.add(Station(id="ST", name="S"))
    session.flush()
    session.add(Device(id="T", station_id="ST", pin_key_hex=""))
    session.flush()
    session.add(Authorization(id="a1", card_id=1, account_id=1, device_id="T", pump=1, allowed_cl=0,
                              status="open", created_at=NOW, expires_at=NOW + dt.timedelta(minutes=30)))
    session.flush()
    ledger.hold(session, "a1", 1, 1200, NOW + dt.timedelta(minutes=30))
    session.commit()
    assert sweep(session, NOW) == (1, 1)
    statuses = dict(session.execute(select(Card.expiry, Card.status)).all())
    assert statuses == {"2611": "expired", "2612": "active"}
    w1, w2 = session.get(Wallet, 1), session.get(Wallet, 2)
    assert w1 is not None and w2 is not None
    assert (w1.balance, w2.balance) == (1200, 5000)     # the open hold's part stays; wallet 2 valid today
    assert sweep(session, NOW + dt.timedelta(hours=1)) == (0, 0)           # once a day
    ledger.release(session, "a1")
    session.commit()
    assert sweep(session, NOW + dt.timedelta(days=1)) == (0, 2)            # the rest, and wallet 2 now
    assert (w1.balance, w2.balance) == (0, 0)
    kinds = session.scalars(select(Movement.kind).where(Movement.wallet_id == 1).order_by(Movement.id)).all()
    assert kinds == ["topup", "expiry", "expiry"] and ledger.check(session) == []
