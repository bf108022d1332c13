"""The network's pages and API (registry.web.api_network, api_terminals, pages_network): operators add and
edit stations, products and nozzles and schedule price changes on the station's clock; a station manager
reads their own stations only (another's is 404, a change 403); terminals show their link, versions and
backlog, and are accepted and revoked (revoking only with the fleet's authority)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from registry import network
from registry.fleet.admin import create_customer
from registry.models import AuditEntry, Device, Nozzle, Transaction
from registry.pki import Authority
from registry.web.app import create_app
from registry.web.deps import utcnow
from registry.web.settings import WebSettings
from registry.web_models import PriceChange
from tests.web_client import PASSWORD, WebClient, WebDb, new_user

SignedIn = Callable[..., WebClient]


def _network(db: WebDb) -> None:
    """Two stations (ST-1 in Madrid, ST-2), two products, three nozzles, three terminals."""
    now = utcnow()
    with db.sessions() as s:
        network.add_station(s, "ST-1", "Calle Mayor", timezone="Europe/Madrid", actor="seed", now=now)
        network.add_station(s, "ST-2", "Ring Road", actor="seed", now=now)
        network.add_product(s, "DSL", "Diesel", actor="seed", now=now)
        network.add_product(s, "95", "Super 95", actor="seed", now=now)
        network.add_nozzle(s, "ST-1", 1, 1, "DSL", 1659, actor="seed", now=now)
        network.add_nozzle(s, "ST-1", 1, 2, "95", 1799, actor="seed", now=now)
        network.add_nozzle(s, "ST-2", 1, 1, "DSL", 1600, actor="seed", now=now)
        s.add_all([
            Device(id="T-1", station_id="ST-1", pin_key_hex="00" * 16, online=True, last_seen_at=now,
                   reported_software_version="1.4.0", desired_software_version="1.5.0",
                   reported_config_version=7, desired_config_version=7, backlog=3, backlog_oldest_s=40),
            Device(id="T-2", station_id="ST-1", pin_key_hex="00" * 16, status="pending", online=True,
                   last_seen_at=now - dt.timedelta(minutes=10)),
            Device(id="T-9", station_id="ST-2", pin_key_hex="00" * 16)])
        for seq in (1, 2, 5):           # 3 and 4 not received
            s.add(Transaction(sale_id=f"00000000-0000-4000-8000-00000000000{seq}", seq=seq, device_id="T-1",
                              station_id="ST-1", pump=1, nozzle=1, product="DSL", volume_cl=1000,
                              amount_cents=1659, price_milli=1659, card_masked="123456******1234",
                              finished_at=now, received_at=now))
        s.commit()


def _nozzle_prices(db: WebDb, station: str) -> dict[tuple[int, int], int]:
    with db.sessions() as s:
        return {(n.pump, n.nozzle): n.price_milli
                for n in s.scalars(select(Nozzle).where(Nozzle.station_id == station))}


def test_operator_builds_a_station_with_forms_and_reads_it_back(web_db: WebDb, signed_in: SignedIn) -> None:
    op = signed_in("operator")
    added = op.form("/network/products", {"code": "ADB", "name": "AdBlue", "group": "adblue"})
    assert added.status_code == 303
    answer = op.form("/network/stations", {"id": "ST-7", "name": "Harbour", "currency": "eur",
                                           "timezone": "Europe/Moscow"})
    assert answer.status_code == 303 and answer.headers["location"] == "/network/stations/ST-7"
    assert op.form("/network/stations/ST-7/nozzles", {"pump": "2", "nozzle": "1", "product_code": "ADB",
                                                      "price": "0,899"}).status_code == 303
    assert _nozzle_prices(web_db, "ST-7") == {(2, 1): 899}
    detail = op.get("/api/network/stations/ST-7").json()
    assert detail["station"] == {"id": "ST-7", "name": "Harbour", "currency": "EUR",
                                 "timezone": "Europe/Moscow", "pumps": 1, "nozzles": 1}
    assert detail["nozzles"][0]["product_name"] == "AdBlue"
    nozzle_id = detail["nozzles"][0]["id"]
    assert op.form(f"/network/stations/ST-7/nozzles/{nozzle_id}", {"product_code": "ADB",
                                                                   "price": "0.95"}).status_code == 303
    assert _nozzle_prices(web_db, "ST-7") == {(2, 1): 950}
    page = op.get("/network/stations/ST-7")
    assert page.status_code == 200 and "Harbour" in page.text and 'value="0.950"' in page.text
    bad = op.form("/network/stations/ST-7/nozzles", {"pump": "2", "nozzle": "2", "product_code": "ADB",
                                                     "price": "1.2345"})
    assert bad.status_code == 400 and "three decimals" in bad.text
    with web_db.sessions() as s:
        actors = {(a.actor, a.action) for a in s.scalars(select(AuditEntry))}
    assert {(f"web:{op.login}", x) for x in ("product.create", "station.create", "nozzle.create",
                                             "nozzle.edit")} <= actors
    # the API does the same, JSON in and out
    made = op.api("POST", "/api/network/products", json={"code": "LPG", "name": "Autogas", "code3": "004"})
    assert made.status_code == 200 and made.json()["code3"] == "004"
    edited = op.api("PUT", "/api/network/stations/ST-7", json={"name": "Old Harbour", "currency": "RUB",
                                                                "timezone": "Europe/Moscow"})
    assert edited.json()["name"] == "Old Harbour"
    assert op.api("PUT", "/api/network/products/NOPE", json={"name": "x"}).status_code == 404
    described = op.get("/api/openapi.json").json()["paths"]
    assert {"/api/network/prices", "/api/network/terminals/{device_id}/revoke"} <= set(described)
    assert not any(path.startswith("/network/") for path in described)       # pages are not the API


def test_a_price_change_on_the_stations_clock_waits_then_applies_and_can_be_cancelled(
        web_db: WebDb, signed_in: SignedIn) -> None:
    _network(web_db)
    op = signed_in("operator")
    tomorrow = (utcnow() + dt.timedelta(days=1)).date()
    answer = op.form("/network/prices", {"station_id": "ST-1", "product_code": "DSL", "price": "1.599",
                                         "effective_at": f"{tomorrow}T06:00", "back": "station"})
    assert answer.status_code == 303 and answer.headers["location"] == "/network/stations/ST-1"
    with web_db.sessions() as s:
        change = s.scalars(select(PriceChange)).one()
        # 06:00 on Madrid's clock (05:00 UTC in winter, 04:00 in summer), stored as naive UTC
        local = dt.datetime.combine(tomorrow, dt.time(6, 0), tzinfo=ZoneInfo("Europe/Madrid"))
        assert change.effective_at == local.astimezone(dt.UTC).replace(tzinfo=None)
        assert change.applied_at is None and change.created_by == f"web:{op.login}"
    assert _nozzle_prices(web_db, "ST-1")[1, 1] == 1659
    listed = op.get("/api/network/prices?station=ST-1").json()
    assert [c["id"] for c in listed["pending"]] == [change.id]
    page = op.get("/network/prices?station=ST-1")
    assert f"{tomorrow} 06:00" in page.text and "Europe/Madrid" in page.text
    twice = op.form("/network/prices", {"station_id": "ST-1", "product_code": "DSL", "price": "1.499",
                                        "effective_at": f"{tomorrow}T06:00"})
    assert twice.status_code == 400 and "already scheduled" in twice.text
    past = op.form("/network/prices", {"station_id": "ST-1", "product_code": "DSL", "price": "1.499",
                                       "effective_at": "2020-01-01T06:00"})
    assert past.status_code == 400 and "past" in past.text
    assert op.form(f"/network/prices/{change.id}/cancel").status_code == 303
    assert op.get("/api/network/prices").json()["history"][0]["status"] == "cancelled"
    # no time: now, applied at once to every DSL nozzle of ST-1 and no other station's
    now = op.api("POST", "/api/network/prices", json={"station_id": "ST-1", "product_code": "DSL",
                                                       "price_milli": 1555})
    assert now.status_code == 200 and now.json()["status"] == "applied"
    assert _nozzle_prices(web_db, "ST-1") == {(1, 1): 1555, (1, 2): 1799}
    assert _nozzle_prices(web_db, "ST-2") == {(1, 1): 1600}


def test_a_station_manager_reads_their_stations_only_and_changes_nothing(
        web_db: WebDb, signed_in: SignedIn) -> None:
    _network(web_db)
    op = signed_in("operator")
    later = (utcnow() + dt.timedelta(days=2)).isoformat()
    change = op.api("POST", "/api/network/prices", json={"station_id": "ST-2", "product_code": "DSL",
                                                          "price_milli": 1500, "effective_at": later}).json()
    manager = signed_in("station", station_ids="ST-1")
    assert [s["id"] for s in manager.get("/api/network/stations").json()] == ["ST-1"]
    assert manager.get("/api/network/stations/ST-1").status_code == 200
    for url in ("/api/network/stations/ST-2", "/api/network/prices?station=ST-2",
                "/api/network/terminals?station=ST-2", "/api/network/terminals/T-9",
                "/network/stations/ST-2"):
        assert manager.get(url).status_code == 404, url
    assert {c["station_id"] for c in manager.get("/api/network/prices").json()["current"]} == {"ST-1"}
    assert manager.get("/api/network/prices").json()["pending"] == []
    assert [t["id"] for t in manager.get("/api/network/terminals").json()["terminals"]] == ["T-1", "T-2"]
    page = manager.get("/network/stations/ST-1")
    assert page.status_code == 200 and "nozzle-add" not in page.text and "price-schedule" not in page.text
    for method, url, body in (
            ("POST", "/api/network/stations", {"id": "ST-3", "name": "x"}),
            ("PUT", "/api/network/stations/ST-1", {"name": "x", "currency": "EUR", "timezone": "UTC"}),
            ("POST", "/api/network/prices", {"station_id": "ST-1", "product_code": "DSL", "price_milli": 1}),
            ("POST", f"/api/network/prices/{change['id']}/cancel", None),
            ("POST", "/api/network/terminals/T-2/accept", None)):
        assert manager.api(method, url, json=body).status_code == 403, url
    with web_db.sessions() as s:
        customer = create_customer(s, "Haulage Ltd", actor="seed", now=utcnow())
        s.commit()
        fleet = signed_in("fleet", customer_id=customer.id)
    assert fleet.get("/api/network/stations").status_code == 403
    assert fleet.get("/network/terminals").status_code == 403


def test_terminals_show_link_versions_backlog_and_are_accepted(web_db: WebDb, signed_in: SignedIn) -> None:
    _network(web_db)
    op = signed_in("operator")
    listed = op.get("/api/network/terminals").json()
    by_id = {t["id"]: t for t in listed["terminals"]}
    assert by_id["T-1"]["online"] is True and by_id["T-1"]["software_wanted"] == "1.5.0"
    assert by_id["T-1"]["config_wanted"] is None and by_id["T-1"]["backlog"] == 3
    assert (by_id["T-1"]["highest_seq"], by_id["T-1"]["missing"]) == (5, 2)
    assert by_id["T-2"]["online"] is False          # flagged online but silent for ten minutes
    assert (listed["online"], listed["offline"]) == (1, 2)
    assert {"kind": "software", "version": "1.4.0", "online": 1, "offline": 0} in listed["versions"]
    assert listed["can_change"] is True and listed["can_revoke"] is False
    page = op.get("/network/terminals")
    assert page.status_code == 200 and 'id="no-authority"' in page.text and "disabled" in page.text
    assert op.form("/network/terminals/T-2/accept").status_code == 303
    assert op.get("/api/network/terminals/T-2").json()["status"] == "active"
    again = op.api("POST", "/api/network/terminals/T-2/accept")
    assert again.status_code == 400 and "cannot become active" in again.json()["error"]
    refused = op.api("POST", "/api/network/terminals/T-1/revoke")
    assert refused.status_code == 400 and "authority" in refused.json()["error"]
    with web_db.sessions() as s:
        assert s.scalars(select(AuditEntry.action).where(AuditEntry.subject == "device:T-2")).all() == [
            "device.accept"]
        assert s.get(Device, "T-1").status == "active"            # type: ignore[union-attr]


def _certificate(authority: Authority, device_id: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    return authority.issue(csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), device_id).cert_pem


def test_with_the_authority_an_operator_revokes_a_terminal_onto_the_crl(web_db: WebDb,
                                                                       tmp_path: Path) -> None:
    _network(web_db)
    authority = Authority.create(tmp_path / "pki")
    with web_db.sessions() as s:
        device = s.get(Device, "T-1")
        assert device is not None
        device.cert_pem = _certificate(authority, "T-1")
        s.commit()
    app = create_app(WebSettings(db_url=web_db.url, state_dir=web_db.state, tls_dir=tmp_path / "pki"),
                     sessions=web_db.sessions, keys=web_db.keys)
    client = WebClient(app)
    login = new_user(web_db, "operator")
    client.csrf = client.post("/api/session", json={"login": login, "password": PASSWORD}).json()["csrf"]
    assert client.get("/api/network/terminals").json()["can_revoke"] is True
    answer = client.form("/network/terminals/T-1/revoke")
    assert answer.status_code == 303
    assert "Terminal T-1 is revoked" in client.get(answer.headers["location"]).text
    assert client.get("/api/network/terminals/T-1").json()["status"] == "revoked"
    assert len(Authority.load(tmp_path / "pki").revoked_serials()) == 1


def test_pages_render_in_every_language(web_db: WebDb, signed_in: SignedIn) -> None:
    _network(web_db)
    op = signed_in("operator")
    for lang, word in (("ru", "Станции"), ("es", "Estaciones"), ("en", "Stations")):
        assert op.form("/language", {"lang": lang, "back": "/"}).status_code == 303
        for url in ("/network/stations", "/network/stations/ST-1", "/network/products", "/network/prices",
                    "/network/terminals"):
            page = op.get(url)
            assert page.status_code == 200, (lang, url)
        assert word in op.get("/network/stations").text
