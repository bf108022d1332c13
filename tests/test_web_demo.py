"""registry.web.demo: the demo data is made through the registry's functions, once; its sign-ins work."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry import network
from registry.loyalty.history import card_history
from registry.models import AuditEntry, Card, Customer, Movement, Nozzle, Station, Transaction
from registry.web import demo
from registry.web_models import WebUser
from tests.web_client import WebClient, WebDb, web_db  # noqa: F401

NOW = dt.datetime(2026, 12, 2, 9, 0)


def counts(s: Session) -> dict[str, int]:
    return {model.__name__: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for model in (AuditEntry, Card, Customer, Movement, Nozzle, Station, Transaction, WebUser)}


def test_seed_makes_the_demo_once(web_db: WebDb) -> None:  # noqa: F811
    with web_db.sessions() as s:
        first = demo.seed(s, web_db.keys, NOW, sales=True, cheap=True)
    with web_db.sessions() as s:
        made = counts(s)
        second = demo.seed(s, web_db.keys, NOW + dt.timedelta(hours=1), sales=True, cheap=True)
        assert second == first
        assert counts(s) == made
    assert [each.role for each in first] == ["operator", "station", "fleet", "cardholder"]
    assert made["Station"] == 2 and made["Nozzle"] == 10 and made["Customer"] == 1
    assert made["Card"] == 4 and made["WebUser"] == 4 and made["Transaction"] == 60
    with web_db.sessions() as s:
        users = {u.role: u for u in s.scalars(select(WebUser))}
        assert users["station"].station_ids == "DEMO-1"
        customer = s.scalar(select(Customer).where(Customer.name == demo.CUSTOMER))
        assert customer is not None and users["fleet"].customer_id == customer.id
        fleet = s.scalars(select(Transaction).where(Transaction.kind == "fleet")).all()
        assert fleet and all(t.account_id is not None and not t.held for t in fleet)
        assert not s.scalar(select(func.count()).where(Transaction.held.is_(True)))
        history = card_history(s, web_db.keys.token(demo.LOYALTY_NUMBER))
        assert history.account_id == users["cardholder"].account_id and history.balance
        assert history.lines and all(line.kind == "earn" and line.points > 0 for line in history.lines)
        # nothing the demo wrote shows a full card number
        numbers = (*demo.FLEET_NUMBERS, demo.LOYALTY_NUMBER)
        texts = [a.detail for a in s.scalars(select(AuditEntry))]
        texts += [c.masked for c in s.scalars(select(Card))]
        assert not any(n in text for n in numbers for text in texts)


def test_each_demo_login_signs_in(web_db: WebDb) -> None:  # noqa: F811
    with web_db.sessions() as s:
        logins = demo.seed(s, web_db.keys, dt.datetime.now(dt.UTC), cheap=True)
    for each in logins:
        client = WebClient(web_db.app)
        answer = client.post("/api/session", json={"login": each.login, "password": each.password})
        assert answer.status_code == 200, each.login
        assert answer.json()["role"] == each.role
        assert "csrf" in answer.json()


def test_an_existing_network_is_kept(web_db: WebDb) -> None:  # noqa: F811
    with web_db.sessions() as s:
        network.add_product(s, "diesel", "Diesel", actor="test", now=NOW)
        network.add_station(s, "ST-001", "Our station", actor="test", now=NOW)
        network.add_nozzle(s, "ST-001", 1, 1, "diesel", 1659, actor="test", now=NOW)
        s.commit()
        demo.seed(s, web_db.keys, NOW, cheap=True)
        assert s.scalars(select(Station.id)).all() == ["ST-001"]
        manager = s.scalar(select(WebUser).where(WebUser.role == "station"))
        assert manager is not None and manager.station_ids == "ST-001"
        assert not s.scalar(select(func.count()).select_from(Transaction))
