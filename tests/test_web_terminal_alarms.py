"""The terminals' alarms in the back office (registry.web.api_terminals, pages_network): events the
terminals send (stored by registry.fleetops as they arrive over MQTT) show as each terminal's open alarm on
the terminals page and API, and as its events list, newest first, paged and filtered by severity; the
terminal's text is escaped; a station manager sees their own terminals' events only (another's is 404)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from registry import network
from registry.fleet.admin import create_customer
from registry.fleetops import FleetOps
from registry.models import Device
from registry.web.deps import utcnow
from registry.web.pages_network import EVENT_CODES
from registry.web.texts import LANGUAGES, translator
from tests.web_client import WebClient, WebDb

SignedIn = Callable[..., WebClient]
SEVERITY = {"door_open": "alarm", "door_closed": "info", "tamper": "alarm", "tamper_cleared": "info",
            "paper_low": "warning", "paper_ok": "info", "restarting": "info", "sales_parked": "alarm"}


class Nowhere:
    """The registry's link to the broker: receiving events sends nothing."""

    def publish(self, topic: str, payload: bytes, **kw: Any) -> None:
        raise RuntimeError(f"nothing should be sent, got {topic}")


def _network(db: WebDb) -> FleetOps:
    """Stations ST-1 (Madrid) with T-1 and T-2, ST-2 with T-9; the registry's handler of device topics."""
    now = utcnow()
    with db.sessions() as s:
        network.add_station(s, "ST-1", "Calle Mayor", timezone="Europe/Madrid", actor="seed", now=now)
        network.add_station(s, "ST-2", "Ring Road", actor="seed", now=now)
        s.add_all(Device(id=x, station_id=st, pin_key_hex="00" * 16, online=True, last_seen_at=now)
                  for x, st in (("T-1", "ST-1"), ("T-2", "ST-1"), ("T-9", "ST-2")))
        s.commit()
    return FleetOps(db.sessions, Nowhere())


def _send(ops: FleetOps, terminal: str, code: str, minutes_ago: float, detail: str = "",
          severity: str = "") -> None:
    """An event as the terminal publishes it, received by the registry."""
    at = (utcnow() - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"event_id": str(uuid.uuid4()), "terminal": terminal, "at": at,
           "severity": severity or SEVERITY[code], "code": code, "detail": detail or code}
    ops.on_event(protocol.topic("events", terminal=terminal), m.encode(doc, d.EVENT))


def test_a_door_and_a_tamper_show_on_the_terminals_page_and_api(web_db: WebDb, signed_in: SignedIn) -> None:
    ops = _network(web_db)
    _send(ops, "T-1", "door_open", 30)
    _send(ops, "T-1", "door_closed", 20)
    _send(ops, "T-1", "door_open", 10)                    # open again now
    _send(ops, "T-1", "paper_low", 5)
    _send(ops, "T-2", "tamper", 60 * 26)                  # a day and more ago, never cleared
    _send(ops, "T-2", "door_open", 60 * 26)
    _send(ops, "T-2", "door_closed", 60 * 25)
    _send(ops, "T-9", "tamper", 40)
    _send(ops, "T-9", "tamper_cleared", 30)
    assert ops.refused == 0
    op = signed_in("operator")
    listed = op.get("/api/network/terminals").json()
    alarm = {t["id"]: t["alarm"] for t in listed["terminals"]}
    one, two, nine = alarm["T-1"], alarm["T-2"], alarm["T-9"]
    assert (one["state"], one["tone"], one["alarms_24h"]) == ("door_open", "alarm", 2)
    assert one["door_open"] and one["paper_low"] and not one["tamper"]
    assert (two["state"], two["tamper"], two["door_open"]) == ("tamper", True, False)
    assert two["alarms_24h"] == 0 and two["tamper_since"] is not None
    assert (nine["state"], nine["tone"], nine["alarms_24h"]) == ("ok", "ok", 1)
    assert listed["in_alarm"] == 2
    assert op.get("/api/network/terminals/T-2").json()["alarm"] == alarm["T-2"]
    page = op.get("/network/terminals").text
    cells = {x: page.split(f'id="alarm-{x}"')[1].split("</td>")[0] for x in ("T-1", "T-2", "T-9")}
    assert '<span class="badge alarm">Door open</span>' in cells["T-1"]
    assert '<span class="badge warning">Paper low</span>' in cells["T-1"]
    assert "Alarms in 24 h: 2" in cells["T-1"]
    assert '<span class="badge alarm">Tamper: out of service until cleared</span>' in cells["T-2"]
    assert "Door open" not in cells["T-2"]
    assert '<span class="badge ok">No alarm</span>' in cells["T-9"]
    assert 'href="/network/terminals/T-9/events"' in cells["T-9"] and "Terminals in alarm: 2" in page


def test_events_newest_first_a_page_at_a_time_and_by_severity(web_db: WebDb, signed_in: SignedIn) -> None:
    ops = _network(web_db)
    for i in range(60):
        _send(ops, "T-1", "sales_parked" if i % 10 == 0 else "restarting", 120 - i, detail=f"n{i}")
    _send(ops, "T-9", "door_open", 1)
    op = signed_in("operator")
    first = op.get("/api/network/terminals/T-1/events").json()
    assert [e["detail"] for e in first["events"]] == [f"n{i}" for i in range(59, 9, -1)]
    assert first["next_before"] == first["events"][-1]["id"] and first["timezone"] == "Europe/Madrid"
    rest = op.get(f"/api/network/terminals/T-1/events?before={first['next_before']}").json()
    assert [e["detail"] for e in rest["events"]] == [f"n{i}" for i in range(9, -1, -1)]
    assert rest["next_before"] is None
    alarms = op.get("/api/network/terminals/T-1/events?severity=alarm&limit=4").json()
    assert [e["detail"] for e in alarms["events"]] == ["n50", "n40", "n30", "n20"] and alarms["next_before"]
    assert {e["severity"] for e in alarms["events"]} == {"alarm"} and alarms["severity"] == "alarm"
    assert op.get("/api/network/terminals/T-1/events?severity=loud").status_code == 400
    assert op.get("/api/network/terminals/T-1/events?limit=0").status_code == 422
    another = op.get("/api/network/terminals/T-9/events").json()["events"][0]["id"]
    assert op.get(f"/api/network/terminals/T-1/events?before={another}").status_code == 404
    page = op.get("/network/terminals/T-1/events?severity=alarm")
    assert page.status_code == 200 and page.text.count('<span class="badge alarm">Alarm</span>') == 6
    assert 'id="events-older"' not in page.text and "Sales refused by the registry" in page.text
    page = op.get("/network/terminals/T-1/events")
    older = page.text.split('id="events-older"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert older == f"/network/terminals/T-1/events?before={first['next_before']}&amp;severity="
    assert "n9" in op.get(older.replace("&amp;", "&")).text and "n9<" not in page.text


def test_the_terminals_text_is_escaped_and_an_unknown_code_shown_as_sent(web_db: WebDb,
                                                                       signed_in: SignedIn) -> None:
    ops = _network(web_db)
    _send(ops, "T-1", "tamper", 3, detail='<script>alert("x")</script><img src=x onerror=1>')
    _send(ops, "T-1", "fan_stalled", 2, detail="fan & <b>bold</b>", severity="warning")
    op = signed_in("operator")
    page = op.get("/network/terminals/T-1/events").text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=1&gt;" in page
    assert "fan &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert '<span class="small">fan_stalled</span>' in page and 'id="tamper-note"' in page
    assert "Tamper switch tripped" in page and "forecourt provision tamper-clear" in page
    api = op.get("/api/network/terminals/T-1/events").json()["events"]
    assert api[1]["detail"] == '<script>alert("x")</script><img src=x onerror=1>'     # JSON: as sent


def test_a_station_manager_sees_their_terminals_events_only(web_db: WebDb, signed_in: SignedIn) -> None:
    ops = _network(web_db)
    _send(ops, "T-1", "door_open", 5)
    _send(ops, "T-9", "tamper", 5, detail="secret of ST-2")
    manager = signed_in("station", station_ids="ST-1")
    listed = manager.get("/api/network/terminals").json()
    shown = [(t["id"], t["alarm"]["state"]) for t in listed["terminals"]]
    assert shown == [("T-1", "door_open"), ("T-2", "ok")]
    assert listed["in_alarm"] == 1
    assert manager.get("/api/network/terminals/T-1/events").json()["events"][0]["code"] == "door_open"
    today = manager.get("/api/network/terminals/T-9")
    assert (today.status_code, today.json()) == (404, {"error": "no such terminal"})
    for url in ("/api/network/terminals/T-9/events", "/api/network/terminals/T-9/events?severity=alarm",
                "/api/network/terminals/T-404/events"):
        answer = manager.get(url)
        assert (answer.status_code, answer.json()) == (404, today.json()), url
    hidden = manager.get("/network/terminals/T-9/events")
    missing = manager.get("/network/terminals/T-404/events")
    assert hidden.status_code == missing.status_code == 404
    assert "secret of ST-2" not in hidden.text and hidden.text == missing.text.replace("T-404", "T-9")
    assert "T-9" not in manager.get("/network/terminals").text
    with web_db.sessions() as s:
        customer = create_customer(s, "Haulage Ltd", actor="seed", now=utcnow())
        s.commit()
        fleet = signed_in("fleet", customer_id=customer.id)
    assert fleet.get("/api/network/terminals/T-1/events").status_code == 403
    assert fleet.get("/network/terminals/T-1/events").status_code == 403


def test_the_pages_render_in_every_language_and_every_known_code_is_named(web_db: WebDb,
                                                                       signed_in: SignedIn) -> None:
    ops = _network(web_db)
    _send(ops, "T-1", "door_open", 5)
    _send(ops, "T-1", "tamper", 4)
    op = signed_in("operator")
    for lang, word in (("ru", "Вскрытие: не работает до сброса"), ("es", "Puerta abierta"),
                       ("en", "Door opened")):
        assert op.form("/language", {"lang": lang, "back": "/"}).status_code == 303
        for url in ("/network/terminals", "/network/terminals/T-1/events",
                    "/network/terminals/T-2/events?severity=warning"):
            assert op.get(url).status_code == 200, (lang, url)
        assert word in op.get("/network/terminals").text + op.get("/network/terminals/T-1/events").text
    for lang in LANGUAGES:
        assert all(translator(lang)(f"network.event_{code}") for code in EVENT_CODES)
