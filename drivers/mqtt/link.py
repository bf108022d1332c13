"""A paho-mqtt 2.x client speaking MQTT 5: reconnects by itself, re-subscribes, and does
request/response with a response topic, correlation data and a message expiry interval.

With TlsFiles it speaks TLS 1.2 or later, checks the broker's certificate and name against the fleet CA
and shows its own client certificate. A refusal (a TLS alert or a failing CONNACK) is logged once per
reason and kept in `refused` until the next good connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.errors import ConfigError, HostUnavailable

__all__ = ["Handler", "MqttLink", "TlsFiles", "tls_context"]

log = logging.getLogger(__name__)

ROUTES = 10_000          # topics whose handlers are remembered (a fleet's devices times their topics)

# handler(topic, payload, properties)
Handler = Callable[[str, bytes, Properties | None], None]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS client: the CA that signed the broker, this client's certificate and its key."""
    ca: Path
    cert: Path
    key: Path


class _Socket(ssl.SSLSocket):
    """Tells its context why the broker's TLS refused us (paho swallows handshake errors and retries)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except ssl.SSLError as exc:
            _report(self.context, exc)
            raise

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        # TLS 1.3: the server checks the client's certificate after the client's handshake is done, so its
        # alert (certificate required, unknown CA, revoked) arrives with the first read (RFC 8446, 4.4.2.4)
        try:
            return super().recv(buflen, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            raise                        # the session closed (close_notify or a dropped line): no refusal
        except ssl.SSLError as exc:
            _report(self.context, exc)
            raise


class _Context(ssl.SSLContext):
    sslsocket_class = _Socket
    report: Callable[[str], None] | None = None


def _report(context: ssl.SSLContext, exc: ssl.SSLError) -> None:
    report = getattr(context, "report", None)
    if report is not None:
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        report(f"TLS: {detail}")


def tls_context(files: TlsFiles) -> _Context:
    """A TLS 1.2+ client context: the broker checked against files.ca (and its name), our certificate."""
    context = _Context(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(files.ca))
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:      # missing file, not PEM, key not the certificate's
        raise ConfigError(f"MQTT TLS files unusable: {exc.strerror or getattr(exc, 'reason', '') or exc}",
                          ca=str(files.ca), cert=str(files.cert)) from exc
    return context


class MqttLink:
    def __init__(self, host: str, port: int, client_id: str, *, keepalive: int = 15,
                 will: tuple[str, bytes] | None = None, session_expiry: int = 0,
                 tls: TlsFiles | None = None) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.keepalive = keepalive
        self.refused: str | None = None     # why the broker last refused us; None while fine
        self._session_expiry = session_expiry
        self.connected = threading.Event()
        self._subs: dict[str, tuple[int, Handler]] = {}
        # the handlers of each topic seen, found once: matching every filter cost ~10 us each per message
        self._routes: dict[str, list[Handler]] = {}
        self._pending: dict[bytes, tuple[threading.Event, list[bytes]]] = {}
        self._lock = threading.Lock()
        self._on_state: list[Callable[[bool], None]] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = _no_delay
        if tls is not None:
            context = tls_context(tls)
            context.report = self._refuse
            c.tls_set_context(context)
        self._client = c

    def on_state(self, callback: Callable[[bool], None]) -> None:
        """callback(True) after each (re)connect, callback(False) after each loss."""
        self._on_state.append(callback)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session_expiry:
            props.SessionExpiryInterval = self._session_expiry
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive,
                                   clean_start=self._session_expiry == 0, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic] = (qos, handler)
            self._routes.clear()
        if self.connected.is_set():
            self._client.subscribe(topic, qos=qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> None:
        if not self.connected.is_set():
            raise HostUnavailable("not connected to the broker", broker=f"{self.host}:{self.port}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HostUnavailable("publish failed", rc=info.rc)

    def request(self, topic: str, payload: bytes, response_topic: str, timeout: float) -> bytes:
        """Publish a request and wait for the reply carrying the same correlation data."""
        corr = uuid.uuid4().bytes
        done = threading.Event()
        box: list[bytes] = []
        with self._lock:
            self._pending[corr] = (done, box)
        try:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            props.CorrelationData = corr
            props.MessageExpiryInterval = max(1, int(timeout))
            self.publish(topic, payload, qos=1, properties=props)
            if not done.wait(timeout):
                raise HostUnavailable("no answer from host in time", timeout=timeout)
            return box[0]
        finally:
            with self._lock:
                self._pending.pop(corr, None)

    def reply(self, request_props: Properties | None, payload: bytes) -> None:
        """Answer a request received by a handler (registry side)."""
        topic = getattr(request_props, "ResponseTopic", None)
        if not topic:
            log.warning("request without response topic dropped")
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        corr = getattr(request_props, "CorrelationData", None)
        if corr is not None:
            props.CorrelationData = corr
        self.publish(topic, payload, qos=1, properties=props)

    def _refuse(self, reason: str) -> None:
        if reason != self.refused:        # once per reason: paho retries every few seconds
            log.warning("broker refused connection", extra={"reason": reason, "client": self.client_id,
                                                            "broker": f"{self.host}:{self.port}"})
        self.refused = reason

    # paho callbacks, run on paho's network thread
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any,
                    properties: object) -> None:
        if getattr(reason, "is_failure", False):
            self._refuse(f"CONNACK: {reason}")
            return
        self.refused = None
        with self._lock:
            subs = list(self._subs.items())
        for topic, (qos, _) in subs:
            client.subscribe(topic, qos=qos)
        self.connected.set()
        for cb in self._on_state:
            cb(True)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                       properties: object) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was:
            for cb in self._on_state:
                cb(False)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None)
        if corr is not None:
            with self._lock:
                waiter = self._pending.get(bytes(corr))
            if waiter is not None:
                waiter[1].append(bytes(msg.payload))
                waiter[0].set()
                return
        with self._lock:
            handlers = self._routes.get(msg.topic)
            if handlers is None:
                handlers = [h for t, (_, h) in self._subs.items()
                            if mqtt.topic_matches_sub(_topic_filter(t), msg.topic)]
                if len(self._routes) >= ROUTES:
                    self._routes.clear()
                self._routes[msg.topic] = handlers
        for handler in handlers:
            try:
                handler(msg.topic, bytes(msg.payload), props)
            except Exception:  # one bad message must not stop the network thread
                log.exception("handler failed", extra={"topic": msg.topic})


def _no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """TCP_NODELAY on the broker connection: with Nagle's algorithm a publish written right after a PUBACK
    waits for the broker's delayed TCP ACK (~40 ms on Linux), which capped a window of 20 sales at ~400/s."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        try:
            setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass                      # not TCP (a websocket wrapper): nothing to tune


def _topic_filter(subscription: str) -> str:
    """The topic filter of a subscription: a shared one ($share/group/filter, MQTT 5.0 4.8.2) without its
    prefix, as the messages it delivers carry their own topic."""
    if subscription.startswith("$share/"):
        return subscription.split("/", 2)[2] if subscription.count("/") >= 2 else subscription
    return subscription
