"""Scenario config-rollback: an older, a badly signed and an expired configuration are each refused.

The terminal keeps the version it runs (its config.signed.json and its pump prices stay as they were)
and reports each refusal: an EVENT config_refused with the reason on its events topic, and a log line.
The three are published as the registry would (not retained: the registry's own retained one stays).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.signing import key_id, sign_envelope
from drivers.mqtt import MqttLink
from firmware.configstore import CONFIG_FILE
from registry.configs import load_or_create_signing_key

__all__ = ["config_rollback", "running_config"]


def running_config(sim: Any) -> dict[str, Any] | None:
    """The signed configuration the simulator's terminal runs, as it keeps it on disk."""
    path = sim.terminal_config.parent / CONFIG_FILE
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc


def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _registry_link(sim: Any) -> MqttLink:
    """A client with the registry's rights: its certificate when the broker asks for one."""
    tls = sim.service_tls("registry") if getattr(sim, "authority", None) is not None else None
    return MqttLink("127.0.0.1", sim.broker_port, "config-rollback", tls=tls)


def _offers(sim: Any, running: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(expected reason, SIGNED_CONFIG) for each bad configuration; each one changes a price."""
    key = load_or_create_signing_key(sim.state / "registry")
    rogue = Ed25519PrivateKey.generate()
    body = json.loads(json.dumps(running["body"]))
    for p in body["prices"]:
        p["price_milli"] = min(999_999, p["price_milli"] + 100)
    version, now = running["version"], dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

    def signed(v: int, issued: dt.datetime, days: int, private: Ed25519PrivateKey) -> dict[str, Any]:
        return sign_envelope(body, terminal=sim.device["id"], version=v, issued_at=issued,
                             expires_at=issued + dt.timedelta(days=days), key_id=key_id(key.public_key()),
                             private_key=private)

    return [
        # version 1 running: equal is the oldest a version can be (versions start at 1)
        ("old_version", signed(max(1, version - 1), now, 30, key)),
        ("bad_signature", signed(version + 1, now, 30, rogue)),     # another key under the registry's id
        ("expired", signed(version + 2, now - dt.timedelta(days=31), 30, key)),
    ]


def config_rollback(run: Any) -> None:
    sim = run.sim
    run.ready()
    run.check(_until(lambda: running_config(sim) is not None, 20), "the terminal runs a signed configuration")
    running = running_config(sim)
    if running is None:
        return
    run.log(f"terminal runs configuration version {running['version']}")
    tid = sim.device["id"]
    prices_before = {n: dict(sim.pump_line.pump(n).prices) for n in sim.terminal_pumps}
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_event(topic: str, payload: bytes, props: Any) -> None:
        doc = m.decode(payload, d.EVENT)
        with lock:
            events.append(doc)

    def refused() -> list[str]:
        with lock:
            return [e["detail"] for e in events if e["code"] == "config_refused"]

    link = _registry_link(sim)
    link.subscribe(protocol.topic("events", terminal=tid), on_event)
    link.start()
    try:
        run.check(link.wait_connected(10), "a registry client connects to the broker")
        offers = _offers(sim, running)
        for reason, doc in offers:
            run.log(f"registry side publishes version {doc['version']} ({reason})")
            link.publish(protocol.topic("config", terminal=tid), m.encode(doc, d.SIGNED_CONFIG), retain=False)
        run.check(_until(lambda: len(refused()) >= len(offers), 15),
                  f"{len(refused())} config_refused events, expected {len(offers)}")
    finally:
        link.stop()
    for reason, doc in offers:
        seen = any(f"reason={reason} offered={doc['version']} " in e for e in refused())
        run.log(f"event config_refused {reason}, version {doc['version']}: {'seen' if seen else 'missing'}")
        run.check(seen, f"event config_refused with reason {reason} for version {doc['version']}")
    after = running_config(sim)
    run.check(after == running, "the terminal still runs the configuration it ran, unchanged on disk")
    run.check({n: dict(sim.pump_line.pump(n).prices) for n in sim.terminal_pumps} == prices_before,
              "pump prices unchanged")
    log = (sim.state / "terminal.log").read_text(errors="replace")
    for reason, _ in offers:
        run.check("configuration refused" in log and f"reason={reason}" in log,
                  f"terminal log states the refusal ({reason})")
