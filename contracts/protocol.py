"""Every MQTT topic between terminals and the registry: who sends it, what it carries, how (docs/protocol.md).

The table is data. The broker's ACL (registry.broker) is made from it: a terminal, whose certificate's
common name is its device id, may publish only the topics it sends and read only those it receives, under
its own id; the claim identity reaches only the enrollment topics; the registry all of forecourt/v1.
Each message is checked on receipt against its schema (contracts.messages.decode) before anyone acts on it.

>>> topic("sales", terminal="T-0001")
'forecourt/v1/terminal/T-0001/sales'
>>> terminal_of("forecourt/v1/terminal/T-0001/sales")
'T-0001'
>>> terminal_of("forecourt/v1/terminal/+/sales") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from contracts import device_messages as d
from contracts import messages as m
from contracts import service_messages as sv
from contracts.messages import Check

__all__ = ["BY_NAME", "CLAIM", "PREFIX", "REGISTRY", "TABLE", "TERMINAL", "TOPICS", "Topic", "shared",
           "subscription", "terminal_of", "topic"]

PREFIX = "forecourt/v1"
TERMINAL = "terminal"     # the sender of a topic a terminal publishes
REGISTRY = "registry"
CLAIM = "claim"           # the enrollment identity (provisioning by claim)


@dataclass(frozen=True)
class Topic:
    name: str
    pattern: str                              # {terminal} a device id, {client} the claim client's id
    sender: str                               # TERMINAL, REGISTRY or CLAIM (the registry answers CLAIM)
    schema: Mapping[str, Check] | None        # None: raw bytes (a piece of an update bundle)
    qos: int
    retain: bool
    note: str
    schemas: tuple[Mapping[str, Check], ...] = ()   # further payloads the same topic carries


TABLE: tuple[Topic, ...] = (
    Topic("auth_request", PREFIX + "/terminal/{terminal}/auth", TERMINAL, m.AUTH_REQUEST, 1, False,
          "MQTT 5 request: response topic = inbox, correlation data, message expiry = the auth timeout"),
    Topic("terminal_inbox", PREFIX + "/terminal/{terminal}/inbox", REGISTRY, m.AUTH_RESPONSE, 1, False,
          "answers to requests (by correlation data) and sale acknowledgements",
          (m.SALE_ACK, sv.SERVICE_RESPONSE)),
    Topic("service_request", PREFIX + "/terminal/{terminal}/service", TERMINAL, sv.SERVICE_REQUEST, 1, False,
          "MQTT 5 request (loyalty, vouchers, attendants, top-ups): response topic = inbox, correlation "
          "data, message expiry"),
    Topic("sales", PREFIX + "/terminal/{terminal}/sales", TERMINAL, m.SALE, 1, False,
          "store-and-forward, idempotent by sale_id; acknowledged by a SALE_ACK on the inbox"),
    Topic("config", PREFIX + "/terminal/{terminal}/config", REGISTRY, d.SIGNED_CONFIG, 1, True,
          "the signed configuration the device should run (desired state)"),
    Topic("status", PREFIX + "/terminal/{terminal}/status", TERMINAL, d.STATUS, 1, True,
          "online on connect; the connection's last will publishes offline"),
    Topic("heartbeat", PREFIX + "/terminal/{terminal}/heartbeat", TERMINAL, d.HEARTBEAT, 1, False,
          "every minute and on request: versions run, backlog (reported state)"),
    Topic("events", PREFIX + "/terminal/{terminal}/events", TERMINAL, d.EVENT, 1, False,
          "events and alarms, idempotent by event_id"),
    Topic("commands", PREFIX + "/terminal/{terminal}/commands", REGISTRY, d.COMMAND, 1, False,
          "remote commands, carried out between sales"),
    Topic("command_result", PREFIX + "/terminal/{terminal}/commands/result", TERMINAL, d.COMMAND_RESULT, 1,
          False, "one result per command_id"),
    Topic("cert_request", PREFIX + "/terminal/{terminal}/cert/request", TERMINAL, d.CERT_REQUEST, 1, False,
          "certificate rotation: a CSR for a new device key"),
    Topic("cert_reply", PREFIX + "/terminal/{terminal}/cert/reply", REGISTRY, d.CERT_REPLY, 1, False,
          "the new certificate, or why not"),
    Topic("update_offer", PREFIX + "/terminal/{terminal}/update", REGISTRY, d.UPDATE_OFFER, 1, True,
          "the software version the device should run (desired state)"),
    Topic("update_fetch", PREFIX + "/terminal/{terminal}/update/fetch", TERMINAL, d.UPDATE_FETCH, 1, False,
          "MQTT 5 request for a piece of a bundle: response topic = update_chunk"),
    Topic("update_chunk", PREFIX + "/terminal/{terminal}/update/chunk", REGISTRY, None, 1, False,
          "raw bytes of the bundle from the offset asked (correlation data of the request)"),
    Topic("update_report", PREFIX + "/terminal/{terminal}/update/report", TERMINAL, d.UPDATE_REPORT, 1,
          False, "how an offered update went"),
    Topic("enroll_request", PREFIX + "/enroll/{client}/request", CLAIM, d.ENROLL_REQUEST, 1, False,
          "a new device: one-time token, serial number, CSR"),
    Topic("enroll_reply", PREFIX + "/enroll/{client}/reply", REGISTRY, d.ENROLL_REPLY, 1, True,
          "accepted (certificate, CA, configuration keys, sealed keys), pending or refused; retained "
          "until the device has it"),
)

TOPICS: Mapping[str, str] = {t.name: t.pattern for t in TABLE}
BY_NAME: Mapping[str, Topic] = {t.name: t for t in TABLE}

_ID = r"[A-Za-z0-9_.-]{1,64}"
_TERMINAL_TOPIC = re.compile(re.escape(PREFIX) + rf"/terminal/({_ID})/.+")


def topic(name: str, *, terminal: str = "", client: str = "") -> str:
    """The concrete topic `name` for one device (or enrollment client)."""
    return TOPICS[name].format(terminal=terminal, client=client)


def subscription(name: str) -> str:
    """The registry's filter for `name` over every device: {terminal} and {client} become +."""
    return TOPICS[name].format(terminal="+", client="+")


def shared(name: str, group: str = "registry") -> str:
    """The registry's shared subscription (MQTT 5, 4.8.2): each message goes to one worker of the group.

    >>> shared("sales")
    '$share/registry/forecourt/v1/terminal/+/sales'
    """
    return f"$share/{group}/{subscription(name)}"


def terminal_of(concrete: str) -> str | None:
    """The device id in a concrete terminal topic; None for any other topic."""
    match = _TERMINAL_TOPIC.fullmatch(concrete)
    return match.group(1) if match else None
