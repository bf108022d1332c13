"""Central scenarios: the broker's ACL between terminals, shown by the broker's own answers.

`Probe` is a bare MQTT 5 client that keeps what the broker answered: the SUBACK reason code of each
subscription, the PUBACK reason code of each QoS 1 publish (MQTT 5.0, 3.9.3 and 3.4.2.1: 0x87 Not
authorized), and why a connection was refused (TLS alert or CONNACK).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contracts import protocol
from drivers.mqtt import MqttLink, TlsFiles
from drivers.mqtt.link import tls_context
from hostsim.services import client_certificate

__all__ = ["GRANTED_QOS1", "NOT_AUTHORIZED", "Probe", "acl_cross_device", "refusal"]

NOT_AUTHORIZED = 0x87
GRANTED_QOS1 = 0x01


class Probe:
    """One MQTT 5 connection over TLS; subscribe() and publish() return the broker's reason code."""

    def __init__(self, port: int, tls: TlsFiles, client_id: str = "", host: str = "127.0.0.1") -> None:
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:8]}"
        self.messages: list[tuple[str, bytes]] = []
        self._acks: dict[int, int] = {}
        self._done = threading.Condition()
        self._connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(tls))
        self.connack: ReasonCode | None = None
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.connect(host, port, keepalive=30)
        c.loop_start()
        self._client = c
        if not self._connected.wait(10) or self.connack is None or self.connack.is_failure:
            self.close()
            raise ConnectionRefusedError(f"{self.client_id}: CONNACK {self.connack}")

    def subscribe(self, topic_filter: str, timeout: float = 5.0) -> int:
        _, mid = self._client.subscribe(topic_filter, qos=1)
        if mid is None:
            raise TimeoutError(f"{self.client_id}: not connected")
        return self._wait(mid, timeout)

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> int:
        info = self._client.publish(topic, payload, qos=1)
        return self._wait(info.mid, timeout)

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _wait(self, mid: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._done:
            while mid not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._client.is_connected():
                    raise TimeoutError(f"{self.client_id}: no answer to packet {mid}")
                self._done.wait(min(left, 0.1))
            return self._acks.pop(mid)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: ReasonCode, properties: Any) -> None:
        self.connack = code
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: list[ReasonCode],
                      properties: Any) -> None:
        with self._done:
            self._acks[mid] = codes[0].value
            self._done.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, code: ReasonCode, properties: Any) -> None:
        with self._done:
            self._acks[mid] = code.value
            self._done.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, bytes(msg.payload)))


def refusal(port: int, tls: TlsFiles, timeout: float = 5.0) -> str | None:
    """Why the broker refuses a connection with these files (None: it accepted one)."""
    link = MqttLink("127.0.0.1", port, f"refusal-{uuid.uuid4().hex[:8]}", tls=tls)
    link.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and link.refused is None and not link.connected.is_set():
            time.sleep(0.02)
        return None if link.connected.is_set() else (link.refused or "no answer")
    finally:
        link.stop()


# What a terminal may try against another one, and what the registry sends it.
FORGED = ("sales", "auth_request", "status", "events")
PRIVATE = ("terminal_inbox", "config", "commands")
OTHER_DEVICE = "T-ACL-B"       # a second device with a certificate of the same CA


def acl_cross_device(run: Any) -> None:
    """The simulator's terminal A, with its own certificate, tries terminal B's topics. The broker answers
    each forged publish with PUBACK 0x87; it grants A's subscriptions to B's topics (mosquitto 2.0.11's
    acl_file checks reads on delivery) and then delivers B's messages to B only. A witness with the
    registry's certificate, subscribed to all of B's topics, receives none of A's forgeries."""
    sim = run.sim
    port, a_id = sim.broker_port, sim.device["id"]
    work = sim.state / "acl-cross-device"
    work.mkdir(exist_ok=True)
    b_files = client_certificate(sim.authority, OTHER_DEVICE, work)
    probes = [Probe(port, sim.service_tls("registry"), "acl-witness"), Probe(port, b_files, "acl-b"),
              Probe(port, sim.terminal_tls, "acl-a")]
    witness, b, a = probes
    try:
        mine = f"{protocol.PREFIX}/terminal/{OTHER_DEVICE}/#"
        for p in (witness, b):
            run.check(p.subscribe(mine) == GRANTED_QOS1, f"{p.client_id} may subscribe to {mine}")
        for name in FORGED:
            where = protocol.topic(name, terminal=OTHER_DEVICE)
            code = a.publish(where, b'{"forged": true}')
            run.log(f"{a_id} publishes on {where}: PUBACK 0x{code:02x}")
            run.check(code == NOT_AUTHORIZED, f"{a_id} publishing on {where}: 0x{code:02x}, not 0x87")
        for name in PRIVATE:
            where = protocol.topic(name, terminal=OTHER_DEVICE)
            run.log(f"{a_id} subscribes to {where}: SUBACK 0x{a.subscribe(where):02x}")
            witness.publish(where, f"for {OTHER_DEVICE} only: {name}".encode())
        deadline = time.monotonic() + 10         # B's own arrive; one refused to A would have by then too
        while len(b.messages) < len(PRIVATE) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        run.log(f"{OTHER_DEVICE} received {len(b.messages)} messages, {a_id} {len(a.messages)}, "
                f"the witness {len(witness.messages)} (its own {len(PRIVATE)})")
        leaked = [t for t, _ in a.messages]
        run.check(leaked == [], f"{a_id} received {OTHER_DEVICE}'s messages: {leaked}")
        run.check(len(b.messages) == len(PRIVATE), f"{OTHER_DEVICE} received {len(b.messages)} of its "
                  f"{len(PRIVATE)} messages")
        forged = [t for t, body in witness.messages if b"forged" in body]
        run.check(forged == [], f"forged messages reached the registry's witness: {forged}")
        run.check(a.is_connected, "the broker refuses message by message; the connection stays")
    finally:
        for p in probes:
            p.close()
