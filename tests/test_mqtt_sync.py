"""Terminal <-> registry over a real mosquitto: authorization, retained config
and store-and-forward of sales."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.cards import card_token, mask_pan
from contracts.errors import HostUnavailable
from contracts.reasons import DeclineReason
from contracts.signing import key_id, sign_envelope
from drivers.mqtt import MqttLink
from firmware.configstore import write_config_keys
from firmware.hostlink import HostLink, sale_payload
from firmware.programs.bank.summary import BankSummary
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset
from registry.broker import broker_config
from registry.configs import config_keys, load_or_create_signing_key
from registry.models import Card, Transaction
from registry.seed import load_seed
from registry.server import Registry, utcnow
from registry.service import held_sales, record_sale, sale_conflicts

pytestmark = pytest.mark.system

MOSQUITTO = "/usr/sbin/mosquitto"
SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")
PAN = "7077001000000019"
TERMINAL, STATION = "T-0001", "ST-001"
AUTH_TOPIC = protocol.topic("auth_request", terminal=TERMINAL)
SALES_TOPIC = protocol.topic("sales", terminal=TERMINAL)
SEED_DOC = load_seed(SEED)


def seed_nozzles(wallet: int, pump: int) -> list[int]:
    """The nozzles of a pump whose product the seed lets a wallet buy (the seed file may evolve)."""
    products = next(set(w["products"]) for w in SEED_DOC["wallets"] if w["id"] == wallet)
    return sorted(n["nozzle"] for n in SEED_DOC["nozzles"] if n["pump"] == pump and n["product"] in products)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(broker_config(port))
    log = tmp_path / "mosquitto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    b = Broker(port, proc, log)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False
        assert wait_for(listening, 10, 0.02), f"mosquitto did not start: {log.read_text()}"
        yield b
    finally:
        b.stop()


@pytest.fixture
def registry(broker: Broker, tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", broker.port,
                   seed=SEED)
    reg.start()
    try:
        assert reg.link.wait_connected(5)
        yield reg
    finally:
        reg.stop()


@dataclass
class Terminal:
    link: MqttLink
    journal: Journal
    host: HostLink


def make_terminal(port: int, journal_path: Path, auth_timeout: float = 5.0,
                  pin_key: bytes = PIN_KEY, trust: Path | None = None) -> Terminal:
    """trust: a registry's state dir whose configuration key the terminal trusts (as provisioned)."""
    if trust is not None:
        write_config_keys(journal_path.parent, config_keys(trust))
    journal = Journal(journal_path)
    link = MqttLink("127.0.0.1", port, TERMINAL)
    host = HostLink(link, journal, TERMINAL, STATION, pin_key=pin_key, auth_timeout=auth_timeout)
    return Terminal(link, journal, host)


@pytest.fixture
def terminal(broker: Broker, tmp_path: Path) -> Iterator[Terminal]:
    t = make_terminal(broker.port, tmp_path / "terminal" / "journal.db", trust=tmp_path / "registry")
    t.link.start()
    try:
        assert t.link.wait_connected(5)
        yield t
    finally:
        t.host.stop_sync()
        t.link.stop()
        t.journal.close()


@dataclass
class Spy:
    """A third MQTT client: publishes raw payloads and records what it sees."""

    link: MqttLink
    seen: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, topic: str) -> None:
        def handler(t: str, payload: bytes, props: Any) -> None:
            with self.lock:
                self.seen.setdefault(topic, []).append(bytes(payload))
        self.link.subscribe(topic, handler)

    def got(self, topic: str) -> list[bytes]:
        with self.lock:
            return list(self.seen.get(topic, []))


@pytest.fixture
def spy(broker: Broker) -> Iterator[Spy]:
    s = Spy(MqttLink("127.0.0.1", broker.port, "spy-" + uuid.uuid4().hex[:8]))
    s.link.start()
    try:
        assert s.link.wait_connected(5)
        yield s
    finally:
        s.link.stop()


def pin_block(pin: str = "1234", pan: str = PAN) -> bytes:
    return encipher_pinblock_iso_4(PIN_KEY, pin, pan)


def wait_config(t: Terminal) -> dict[str, Any]:
    assert t.host.config_changed.wait(5), "no retained configuration arrived"
    assert t.host.config is not None
    return t.host.config


BANK_SUMMARY = BankSummary(entry_mode="051", preauth_cents=12000, cvm_results="420300", aid="A0000000031010",
                           app_label="VISA DEBIT", response_code="00", auth_code="A1B2C3").to_doc()


def completed_sale(journal: Journal, auth_id: str, volume_cl: int = 2000, program: str = "fleet") -> str:
    """A completed sale as the sale machine journals it. A fleet sale settles against the registry's
    authorization (registry_auth in its data); a bank sale's reference is the acquirer's approval code."""
    sale_id = str(uuid.uuid4())
    journal.begin_sale(sale_id, 1, mask_pan(PAN), card_token(b"k" * 32, PAN), program=program)
    journal.transition(sale_id, SaleState.AUTHORIZING)
    if program == "bank":
        journal.transition(sale_id, SaleState.APPROVED, preset=Preset.amount(12000), nozzles=[1],
                           reference=auth_id, data=BANK_SUMMARY)
    else:
        journal.transition(sale_id, SaleState.APPROVED, preset=Preset.volume(15000), nozzles=[1],
                           reference=auth_id, data={"registry_auth": auth_id})
    journal.transition(sale_id, SaleState.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
    amount = (volume_cl * 1659 + 500) // 1000
    journal.transition(sale_id, SaleState.COMPLETED, nozzle=1, product="diesel", volume_cl=volume_cl,
                       amount_cents=amount, charged_cents=amount, price_milli=1659,
                       finished_at=time.time(), recovered=False, flags=[])
    return sale_id


def registry_rows(reg: Registry, sale_id: str) -> int:
    with reg.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Transaction)
                            .where(Transaction.sale_id == sale_id))
                   or 0)


# -- configuration -----------------------------------------------------------------------------------------

def test_retained_config_arrives_with_prices(registry: Registry, terminal: Terminal, tmp_path: Path) -> None:
    cfg = wait_config(terminal)
    assert terminal.host.configs.version == 1 and cfg["station"] == STATION
    assert cfg["station_name"] == "Forecourt Demo Station" and cfg["currency"] == "EUR"
    prices = {(p["pump"], p["nozzle"]): (p["product"], p["product_name"], p["price_milli"])
              for p in cfg["prices"]}
    names = {p["code"]: p["name"] for p in SEED_DOC["products"]}
    assert prices == {(n["pump"], n["nozzle"]): (n["product"], names[n["product"]], n["price_milli"])
                      for n in SEED_DOC["nozzles"]}
    assert prices[(1, 1)] == ("diesel", "Diesel", 1659)
    # kept on disk: a terminal restarted offline still knows its prices
    assert json.loads((tmp_path / "terminal" / "config.signed.json").read_text())["body"] == cfg
    offline = HostLink(MqttLink("127.0.0.1", free_port(), "offline"), terminal.journal, TERMINAL, STATION,
                       pin_key=PIN_KEY)
    assert offline.config == cfg and not offline.online


def test_config_for_another_terminal_is_ignored(broker: Broker, terminal: Terminal, spy: Spy,
                                                tmp_path: Path) -> None:
    """Signed by the trusted key but for T-0002; garbage; the old unsigned TERMINAL_CONFIG: all refused."""
    doc = {"terminal": TERMINAL, "station": STATION, "station_name": "x", "currency": "EUR", "version": 1,
           "prices": []}
    key = load_or_create_signing_key(tmp_path / "registry")          # the key the terminal trusts
    body = {"station": STATION, "station_name": "x", "currency": "EUR", "prices": [], "products": [],
            "pumps": [], "stop_list": [], "offline_limits": {}, "programs": [], "attendants": [],
            "registry_bundle_key": ""}
    signed = sign_envelope(body, terminal="T-0002", version=9, issued_at=utcnow(),
                           expires_at=utcnow() + dt.timedelta(days=1), key_id=key_id(key.public_key()),
                           private_key=key)
    spy.link.publish(protocol.topic("config", terminal=TERMINAL), m.encode(signed, d.SIGNED_CONFIG))
    spy.link.publish(protocol.topic("config", terminal=TERMINAL), b"garbage")
    spy.link.publish(protocol.topic("config", terminal=TERMINAL), m.encode(doc, m.TERMINAL_CONFIG))
    assert not terminal.host.config_changed.wait(0.5)
    assert terminal.host.config is None
    assert wait_for(lambda: terminal.host.configs.refusals == {"wrong_terminal": 1, "malformed": 2})


# -- authorization -----------------------------------------------------------------------------------------

def test_authorize_round_trip_approved(registry: Registry, terminal: Terminal) -> None:
    wait_config(terminal)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert isinstance(answer, m.AuthAnswer)
    assert answer.approved is True and answer.reason is None
    assert answer.allowed_cl == 15000 and answer.nozzles == tuple(seed_nozzles(1, 1))
    assert answer.card_masked == "707700******0019"
    assert answer.auth_id is not None
    uuid.UUID(answer.auth_id)


def test_authorization_request_crosses_the_broker_sealed_and_expiring(registry: Registry, terminal: Terminal,
                                                                      spy: Spy) -> None:
    """Issue 10: what the broker carries (and may persist) holds no card number; it lives auth_timeout."""
    seen: list[tuple[bytes, Any]] = []
    spy.link.subscribe(AUTH_TOPIC, lambda t, payload, props: seen.append((payload, props)))
    wait_config(terminal)
    time.sleep(0.2)                                   # the spy's subscription is in place
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.approved and answer.card_masked == mask_pan(PAN)
    assert wait_for(lambda: len(seen) == 1, 2)
    payload, props = seen[0]
    doc = m.decode(payload, m.AUTH_REQUEST)
    assert PAN.encode() not in payload and PAN[-10:].encode() not in payload
    assert "pan" not in doc and doc["pan_sealed"].startswith("01")
    assert 1 <= props.MessageExpiryInterval <= terminal.host.auth_timeout


def test_a_terminal_sealing_under_another_key_is_declined_without_a_pin_try(
        registry: Registry, broker: Broker, tmp_path: Path) -> None:
    t = make_terminal(broker.port, tmp_path / "other" / "journal.db", pin_key=bytes(16))
    t.link.start()
    try:
        assert t.link.wait_connected(5)
        answer = t.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block("0000"), pump=1)
    finally:
        t.link.stop()
        t.journal.close()
    assert (answer.approved, answer.reason) == (False, DeclineReason.DO_NOT_HONOUR)
    with registry.sessions() as s:
        card = s.scalar(select(Card).where(Card.token == registry.keys.token(PAN)))
        assert card is not None and card.pin_tries == 0


def test_authorize_round_trip_declined(registry: Registry, terminal: Terminal) -> None:
    wait_config(terminal)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block("0000"), pump=1)
    assert (answer.approved, answer.reason) == (False, DeclineReason.WRONG_PIN)
    assert (answer.auth_id, answer.allowed_cl, answer.nozzles) == (None, 0, ())
    answer = terminal.host.authorize(pan="7077001000000027", expiry="2912",
                                     pin_block=pin_block(pan="7077001000000027"), pump=1)
    assert answer.reason is DeclineReason.LIMIT_EXHAUSTED and not answer.approved


def test_concurrent_requests_get_their_own_answers(registry: Registry, terminal: Terminal) -> None:
    wait_config(terminal)
    results: dict[int, m.AuthAnswer] = {}

    def ask(pump: int) -> None:
        results[pump] = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=pump)

    threads = [threading.Thread(target=ask, args=(p,)) for p in (1, 2, 3, 9)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert [results[p].nozzles for p in (1, 2, 3)] == [tuple(seed_nozzles(1, p)) for p in (1, 2, 3)]
    assert all(results[p].approved for p in (1, 2, 3))
    assert len({results[p].auth_id for p in (1, 2, 3)}) == 3           # one authorization each
    assert results[9].reason is DeclineReason.PUMP_UNKNOWN


def test_broker_down_raises_host_unavailable_quickly(tmp_path: Path) -> None:
    t = make_terminal(free_port(), tmp_path / "journal.db")     # nothing listens there
    t.link.start()
    try:
        start = time.monotonic()
        with pytest.raises(HostUnavailable):
            t.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
        assert time.monotonic() - start < 1.0
        assert not t.host.online
    finally:
        t.link.stop()
        t.journal.close()


def test_registry_down_times_out_as_host_unavailable(broker: Broker, tmp_path: Path) -> None:
    t = make_terminal(broker.port, tmp_path / "journal.db", auth_timeout=0.5)    # the link's own timeout
    t.link.start()
    try:
        assert t.link.wait_connected(5)
        start = time.monotonic()
        with pytest.raises(HostUnavailable, match="in time"):
            t.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
        assert 0.4 <= time.monotonic() - start < 2.0
    finally:
        t.link.stop()
        t.journal.close()


def test_broker_lost_mid_session_raises_quickly(broker: Broker, terminal: Terminal) -> None:
    assert terminal.host.online
    broker.stop()
    assert wait_for(lambda: not terminal.host.online, 5)
    start = time.monotonic()
    with pytest.raises(HostUnavailable):
        terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert time.monotonic() - start < 1.0


# -- store and forward -------------------------------------------------------------------------------------

def test_completed_sale_is_synced_and_stored_once(registry: Registry, terminal: Terminal, spy: Spy) -> None:
    wait_config(terminal)
    inbox = protocol.topic("terminal_inbox", terminal=TERMINAL)
    spy.watch(inbox)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.auth_id is not None
    sale_id = completed_sale(terminal.journal, answer.auth_id)
    assert [r.id for r in terminal.journal.unsynced()] == [sale_id]
    terminal.host.start_sync()
    terminal.host.kick()
    assert wait_for(lambda: terminal.journal.get(sale_id).synced, 5)
    assert terminal.journal.unsynced() == []
    assert registry_rows(registry, sale_id) == 1
    with registry.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
        assert tx is not None
        assert (tx.volume_cl, tx.amount_cents, tx.device_id, tx.flags) == (2000, 3318, TERMINAL, "")
        assert tx.card_masked == "707700******0019"
        assert (tx.kind, tx.auth_id) == ("fleet", answer.auth_id)          # settled against its authorization

    # the same sale sent again (a retry after a lost ack) is acknowledged as a duplicate, never stored twice
    payload = m.encode(sale_payload(terminal.journal.get(sale_id), TERMINAL, STATION), m.SALE)
    spy.link.publish(protocol.topic("sales", terminal=TERMINAL), payload)
    assert wait_for(lambda: any(json.loads(p).get("status") == "duplicate" for p in spy.got(inbox)), 5)
    assert registry_rows(registry, sale_id) == 1
    assert terminal.journal.get(sale_id).synced


def test_sale_is_marked_synced_only_after_the_ack(broker: Broker, terminal: Terminal, spy: Spy) -> None:
    sales_topic = protocol.topic("sales", terminal=TERMINAL)
    inbox = protocol.topic("terminal_inbox", terminal=TERMINAL)
    spy.watch(sales_topic)
    auth_id = str(uuid.uuid4())
    sale_id = completed_sale(terminal.journal, auth_id)
    terminal.host.start_sync()
    terminal.host.kick()
    assert wait_for(lambda: len(spy.got(sales_topic)) >= 1, 5)        # sent, but no registry to answer
    sent = m.decode(spy.got(sales_topic)[0], m.SALE)
    assert (sent["sale_id"] == sale_id and sent["volume_cl"] == 2000
            and sent["card_masked"] == "707700******0019")
    assert (sent["kind"], sent["auth_id"]) == ("fleet", auth_id)      # the program, its registry_auth
    assert PAN not in spy.got(sales_topic)[0].decode()
    time.sleep(0.3)
    assert not terminal.journal.get(sale_id).synced

    def ack(sid: str, status: str) -> None:
        spy.link.publish(inbox, m.encode({"sale_id": sid, "status": status, "reason": ""}, m.SALE_ACK))

    ack(str(uuid.uuid4()), "stored")         # someone else's sale
    ack(sale_id, "rejected")                 # a refusal is not a sync
    spy.link.publish(inbox, b'{"v":1,"sale_id":"' + sale_id.encode() + b'","status":"stored"}')  # malformed
    time.sleep(0.3)
    assert not terminal.journal.get(sale_id).synced
    ack(sale_id, "stored")
    assert wait_for(lambda: terminal.journal.get(sale_id).synced, 5)
    assert [s for s, d in terminal.journal.events(sale_id)][-1] == "completed"


def test_unsynced_sale_is_resent_when_the_registry_comes_back(broker: Broker, terminal: Terminal,
                                                               tmp_path: Path) -> None:
    sale_id = completed_sale(terminal.journal, str(uuid.uuid4()))
    terminal.host.ack_timeout = 1.0          # sent again after its own ack timeout (a kick does not resend)
    terminal.host.start_sync()
    terminal.host.kick()
    time.sleep(0.3)
    assert not terminal.journal.get(sale_id).synced            # no registry yet: nothing acknowledged
    reg = Registry(f"sqlite:///{tmp_path / 'late.db'}", tmp_path / "registry", "127.0.0.1", broker.port,
                   seed=SEED)
    reg.start()
    try:
        assert reg.link.wait_connected(5)
        wait_config(terminal)                                  # the registry is subscribed by now
        terminal.host.kick()
        assert wait_for(lambda: terminal.journal.get(sale_id).synced, 5)
        assert registry_rows(reg, sale_id) == 1
        with reg.sessions() as s:
            tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
            assert tx is not None and tx.flags == "unknown_authorization"
    finally:
        reg.stop()


def test_bank_sale_is_synced_without_an_authorization_id(registry: Registry, terminal: Terminal,
                                                         spy: Spy) -> None:
    wait_config(terminal)
    sales_topic = protocol.topic("sales", terminal=TERMINAL)
    spy.watch(sales_topic)
    sale_id = completed_sale(terminal.journal, "A1B2C3", program="bank")   # the acquirer's approval code
    terminal.host.start_sync()
    terminal.host.kick()
    assert wait_for(lambda: terminal.journal.get(sale_id).synced, 5)
    sent = m.decode(spy.got(sales_topic)[0], m.SALE)
    assert (sent["kind"], sent["auth_id"]) == ("bank", None)
    with registry.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
        assert tx is not None
        assert (tx.kind, tx.auth_id, tx.card_id, tx.flags) == ("bank", None, None, "")


def test_sale_without_kind_from_an_older_terminal_is_stored_as_fleet(registry: Registry, terminal: Terminal,
                                                                      spy: Spy) -> None:
    wait_config(terminal)
    inbox = protocol.topic("terminal_inbox", terminal=TERMINAL)
    spy.watch(inbox)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.auth_id is not None
    old = sale_payload(terminal.journal.get(completed_sale(terminal.journal, answer.auth_id)), TERMINAL,
                       STATION)
    del old["kind"]
    spy.link.publish(protocol.topic("sales", terminal=TERMINAL), json.dumps({"v": 1, **old}).encode())
    def acks() -> list[str]:           # the inbox also carries the authorization answer
        return [d["status"] for d in map(json.loads, spy.got(inbox)) if d.get("sale_id") == old["sale_id"]]

    assert wait_for(lambda: acks() != [], 5)
    assert acks() == ["stored"]
    with registry.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == old["sale_id"]))
        assert tx is not None and (tx.kind, tx.flags) == ("fleet", "")


def test_sale_of_an_unknown_kind_is_malformed(registry: Registry, terminal: Terminal, spy: Spy) -> None:
    wait_config(terminal)
    doc = sale_payload(terminal.journal.get(completed_sale(terminal.journal, str(uuid.uuid4()))), TERMINAL,
                       STATION)
    doc["kind"] = "Cash!"             # any lower-case id names a program; this names none
    spy.link.publish(protocol.topic("sales", terminal=TERMINAL), json.dumps({"v": 1, **doc}).encode())
    assert wait_for(lambda: registry.malformed == 1, 5), registry.malformed
    assert registry_rows(registry, doc["sale_id"]) == 0


# -- malformed traffic -------------------------------------------------------------------------------------

def test_malformed_payloads_are_counted_and_the_registry_keeps_answering(
        registry: Registry, terminal: Terminal, spy: Spy) -> None:
    wait_config(terminal)
    auth_topic = AUTH_TOPIC
    sales_topic = protocol.topic("sales", terminal=TERMINAL)
    spy.link.publish(auth_topic, b"not json")
    spy.link.publish(auth_topic, b'{"v":1,"pan":"7077001000000019"}')
    spy.link.publish(sales_topic, b"\xff\xfe")
    spy.link.publish(sales_topic, json.dumps({"v": 2}).encode())
    # a well-formed sale published on another terminal's topic
    doc = sale_payload(terminal.journal.get(completed_sale(terminal.journal, str(uuid.uuid4()))), TERMINAL,
                       STATION)
    spy.link.publish(protocol.topic("sales", terminal="T-0002"), m.encode(doc, m.SALE))
    assert wait_for(lambda: registry.malformed == 5, 5), registry.malformed
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.approved is True
    assert registry_rows(registry, doc["sale_id"]) == 0


def test_payloads_that_break_the_json_parser_do_not_stop_the_registry(registry: Registry, terminal: Terminal,
                                                                      spy: Spy) -> None:
    wait_config(terminal)
    spy.link.publish(AUTH_TOPIC, b'{"v":1,"pump":' + b"9" * 5000 + b"}")
    spy.link.publish(protocol.topic("sales", terminal=TERMINAL), b"[" * 60000)
    time.sleep(0.3)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.approved is True


def test_parser_breaking_payloads_are_counted_as_malformed(registry: Registry, terminal: Terminal,
                                                           spy: Spy) -> None:
    wait_config(terminal)
    spy.link.publish(AUTH_TOPIC, b'{"v":1,"pump":' + b"9" * 5000 + b"}")
    spy.link.publish(protocol.topic("sales", terminal=TERMINAL), b"[" * 60000)
    assert wait_for(lambda: registry.malformed == 2, 1.5), registry.malformed


# -- sales the registry will never store are parked, not resent (issue 10) ---------------------------------

def _acks(spy: Spy, inbox: str, sale_id: str) -> list[dict[str, Any]]:
    return [d for d in map(json.loads, spy.got(inbox)) if d.get("sale_id") == sale_id]


@pytest.mark.parametrize("finished_at", ["2025-02-30T00:00:00Z", "0000-01-01T00:00:00Z",
                                         "\u0662\u0660\u0662\u0665-01-01T00:00:00Z"])
def test_sale_that_can_never_be_stored_is_rejected_and_parked(
        registry: Registry, terminal: Terminal, spy: Spy, finished_at: str) -> None:
    """Before: the registry dropped it without an answer (or raised inside record_sale), and the terminal
    resent it every 5 s forever."""
    wait_config(terminal)
    inbox, sales_topic = protocol.topic("terminal_inbox", terminal=TERMINAL), SALES_TOPIC
    spy.watch(inbox)
    spy.watch(sales_topic)
    sale_id = completed_sale(terminal.journal, str(uuid.uuid4()))
    doc = sale_payload(terminal.journal.get(sale_id), TERMINAL, STATION) | {"finished_at": finished_at}
    spy.link.publish(sales_topic, json.dumps({"v": 1, **doc}).encode())     # as a terminal with a bad clock
    assert wait_for(lambda: terminal.journal.parked_reason(sale_id) == "malformed", 5)
    assert wait_for(lambda: _acks(spy, inbox, sale_id) != [], 5)
    assert _acks(spy, inbox, sale_id) == [{"v": 1, "sale_id": sale_id, "status": "rejected",
                                           "reason": "malformed"}]
    assert registry_rows(registry, sale_id) == 0 and registry.malformed == 1
    assert terminal.journal.unsynced() == [] and [r.id for r in terminal.journal.parked()] == [sale_id]
    terminal.host.start_sync()
    terminal.host.kick()
    time.sleep(0.5)
    assert len(spy.got(sales_topic)) == 1                  # the parked sale is not resent


def test_second_version_of_a_stored_sale_is_a_conflict_and_parked(
        registry: Registry, terminal: Terminal, spy: Spy, caplog: pytest.LogCaptureFixture) -> None:
    wait_config(terminal)
    inbox = protocol.topic("terminal_inbox", terminal=TERMINAL)
    spy.watch(inbox)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.auth_id is not None
    sale_id = completed_sale(terminal.journal, answer.auth_id, volume_cl=2000)
    first = sale_payload(terminal.journal.get(sale_id), TERMINAL, STATION) | {"volume_cl": 1000,
                                                                              "amount_cents": 1659}
    with registry.sessions() as s:      # an earlier version reached the registry; its ack was lost
        assert record_sale(s, m.decode(m.encode(first, m.SALE), m.SALE), utcnow())["status"] == "stored"
    with caplog.at_level("ERROR"):
        terminal.host.start_sync()
        terminal.host.kick()
        assert wait_for(lambda: terminal.journal.parked_reason(sale_id) == "conflict", 5)
        # the terminal parks the sale, then says so: the line may come a moment after the mark
        assert wait_for(lambda: any(r.name == "firmware.hostlink" for r in caplog.records), 5)
    assert not terminal.journal.get(sale_id).synced
    assert wait_for(lambda: _acks(spy, inbox, sale_id) != [], 5)
    assert {(a["status"], a["reason"]) for a in _acks(spy, inbox, sale_id)} == {("rejected", "conflict")}
    with registry.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
        assert tx is not None and tx.volume_cl == 1000                     # the first version stands
        assert [json.loads(c.payload)["volume_cl"] for c in sale_conflicts(s)] == [2000]
    assert [r.message for r in caplog.records if r.name == "firmware.hostlink"] == [
        "registry rejected sale; parked for an operator"]                  # logged once
    assert sum(r.message.startswith("sale conflict") for r in caplog.records) == 1


def test_held_sale_is_synced_and_kept_apart(registry: Registry, terminal: Terminal, spy: Spy) -> None:
    wait_config(terminal)
    inbox = protocol.topic("terminal_inbox", terminal=TERMINAL)
    spy.watch(inbox)
    answer = terminal.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
    assert answer.auth_id is not None
    sale_id = completed_sale(terminal.journal, answer.auth_id, volume_cl=15_301)    # far over its 150 L
    terminal.host.start_sync()
    terminal.host.kick()
    assert wait_for(lambda: terminal.journal.get(sale_id).synced, 5)
    acks = [(a["status"], a["reason"]) for a in _acks(spy, inbox, sale_id)]
    assert acks[0] == ("stored", "held") and set(acks[1:]) <= {("duplicate", "")}   # a resend before the ack
    assert terminal.journal.parked() == []
    with registry.sessions() as s:
        assert [t.sale_id for t in held_sales(s)] == [sale_id]


def test_sale_the_terminal_cannot_encode_is_parked_and_sync_goes_on(registry: Registry, terminal: Terminal,
                                                                     spy: Spy) -> None:
    wait_config(terminal)
    bad = completed_sale(terminal.journal, str(uuid.uuid4()))
    terminal.journal.transition(bad, SaleState.COMPLETED, product="not a product id")
    good = completed_sale(terminal.journal, "A1B2C3", program="bank")
    terminal.host.start_sync()
    terminal.host.kick()
    assert wait_for(lambda: terminal.journal.get(good).synced, 5)
    assert terminal.journal.parked_reason(bad) == "malformed" and not terminal.journal.get(bad).synced


# -- an authorization whose answer never came is released (crash window 7) ---------------------------------

def _hold_statuses(reg: Registry) -> list[str]:
    from registry.models import Authorization

    with reg.sessions() as s:
        return [a.status for a in s.scalars(select(Authorization)).all()]


def test_hold_granted_after_the_terminal_gave_up_is_released(registry: Registry, broker: Broker,
                                                             tmp_path: Path) -> None:
    """The registry approves, but the answer comes too late (lost with a broker, or slow): the terminal
    declines, and its sale of nothing on the request closes the hold instead of it waiting 30 minutes."""
    t = make_terminal(broker.port, tmp_path / "slow" / "journal.db", auth_timeout=0.000_001,
                      trust=tmp_path / "registry")
    t.link.start()
    try:
        assert t.link.wait_connected(5)
        wait_config(t)
        request_id = str(uuid.uuid4())
        with pytest.raises(HostUnavailable):
            t.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1, request_id=request_id)
        assert wait_for(lambda: _hold_statuses(registry) == ["open"], 5)      # granted, answer not taken
        (key,) = t.journal.values("release:")
        t.host.start_sync()
        assert wait_for(lambda: _hold_statuses(registry) == ["completed"], 10)
        assert wait_for(lambda: t.journal.values("release:") == {}, 5)
        with registry.sessions() as s:
            tx = s.scalar(select(Transaction).where(Transaction.auth_id == request_id))
            assert tx is not None and (tx.volume_cl, tx.amount_cents, tx.held) == (0, 0, False)
            assert tx.sale_id == key.removeprefix("release:")
            assert held_sales(s) == []
    finally:
        t.host.stop_sync()
        t.link.stop()
        t.journal.close()


def test_request_never_sent_queues_no_release(broker: Broker, tmp_path: Path) -> None:
    t = make_terminal(broker.port, tmp_path / "off" / "journal.db")      # never connected
    try:
        with pytest.raises(HostUnavailable):
            t.host.authorize(pan=PAN, expiry="2912", pin_block=pin_block(), pump=1)
        assert t.journal.values("release:") == {}
    finally:
        t.journal.close()
