"""The terminal's service requests to the registry (contracts.service_messages): a loyalty card's balance and
movements, a reward, a voucher, an attendant's sign-in, a cash top-up.

A card number or voucher code is sealed to the request (contracts.panseal, as an authorization's card) and
never leaves the terminal in clear; a PIN only as a PIN block. The answer is the registry's, checked
against the operation's schema; no answer in time, or one that does not fit, is HostUnavailable.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts import protocol
from contracts import service_messages as sv
from contracts.errors import HostUnavailable, MessageError

__all__ = ["Registry", "ServiceAnswer", "ServiceClient", "new_request_id"]


def new_request_id() -> str:
    """A request id as contracts.service_messages takes it (a UUID)."""
    return str(uuid.uuid4())


class Registry(Protocol):
    """What a service request needs of firmware.hostlink.HostLink."""

    terminal: str
    station_id: str
    inbox: str
    auth_timeout: float

    @property
    def link(self) -> Any: ...
    def seal_for_sale(self, number: str, sale_id: str) -> str: ...


@dataclass(frozen=True)
class ServiceAnswer:
    ok: bool
    reason: str                                    # "" when ok, else a contracts.service_messages reason
    result: Mapping[str, Any] = field(default_factory=dict)
    tries_left: int | None = None


class ServiceClient:
    def __init__(self, host: Registry, *, timeout: float | None = None) -> None:
        self.host = host
        self.timeout = timeout if timeout is not None else host.auth_timeout

    def ask(self, op: str, fields: Mapping[str, Any] | None = None, *, card: str | None = None,
            medium: str = "chip", code: str | None = None, request_id: str | None = None,
            sealed: Mapping[str, str] | None = None) -> ServiceAnswer:
        """The registry's answer to one request; card: the card number (or tag "U..." number) it is about;
        code: a voucher code; request_id: the caller's id (journaled before asking, so a request whose
        answer was lost is asked again under the same id: the registry keys its bookings by it); sealed:
        further numbers sealed to the request, by field (loyalty_convert's target_sealed)."""
        rid = request_id if request_id is not None else new_request_id()
        host = self.host
        req: dict[str, Any] = {"request_id": rid, "terminal": host.terminal, "station": host.station_id,
                               "op": op, **(fields or {})}
        if card is not None:
            req["card_sealed"] = host.seal_for_sale(card, rid)
            if medium != "chip":
                req["medium"] = medium
        if code is not None:
            req["code_sealed"] = host.seal_for_sale(code, rid)
        for name, number in (sealed or {}).items():
            req[name] = host.seal_for_sale(number, rid)
        raw = host.link.request(protocol.topic("service_request", terminal=host.terminal),
                                sv.encode_request(req), host.inbox, self.timeout)
        try:
            doc = sv.decode_response(raw)
        except MessageError as exc:
            raise HostUnavailable("registry answered with a malformed message") from exc
        if doc["request_id"] != rid or doc["op"] != op:
            raise HostUnavailable("registry answered another request")
        return ServiceAnswer(doc["ok"], doc["reason"], doc["result"], doc.get("tries_left"))
