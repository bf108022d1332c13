"""The chip purse's requests to the registry (contracts.purse_service) over the terminal's service channel
(firmware.service_client): no answer, or a refusal, is HostUnavailable; the caller carries on offline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from contracts.errors import HostUnavailable
from contracts.purse_service import PURSE_OPS
from firmware.service_client import ServiceClient

__all__ = ["PENDING_FIELD", "PENDING_SALE_FIELD", "PurseService", "RegistryPurseService", "contact_fields"]

PENDING_FIELD = "pending"      # the card's open reservation's counter, when the registry takes it
PENDING_SALE_FIELD = "pending_sale"    # and the sale id the card keeps for it (a UUID)


def contact_fields(purse_id: bytes, counter: int, *, blocked: bool, pending: int | None = None,
                   pending_sale: str | None = None) -> dict[str, Any]:
    """The purse_contact request's fields: the pending slot's counter and sale id when the card has one."""
    fields: dict[str, Any] = {"purse_id": purse_id.hex(), "counter": counter, "blocked": blocked}
    if pending is not None and PENDING_FIELD in PURSE_OPS["purse_contact"]:
        fields[PENDING_FIELD] = pending
        if pending_sale is not None and PENDING_SALE_FIELD in PURSE_OPS["purse_contact"]:
            fields[PENDING_SALE_FIELD] = pending_sale
    return fields


class PurseService(Protocol):
    @property
    def online(self) -> bool: ...
    def contact(self, purse_id: bytes, counter: int, *, blocked: bool, pending: int | None = None,
                pending_sale: str | None = None) -> Mapping[str, Any]: ...
    def load(self, fields: Mapping[str, Any]) -> Mapping[str, Any]: ...
    def records(self, sam_id: bytes, items: Sequence[Mapping[str, Any]],
                advices: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]: ...
    def applied(self, purse_id: bytes, script_ids: Sequence[int]) -> int: ...


class RegistryPurseService:
    def __init__(self, host: Any, *, quick: float = 3.0) -> None:
        """host: firmware.hostlink.HostLink (online, and what ServiceClient needs); quick: the seconds a
        contact or a hand-over of records waits (a driver stands there; an unanswered one is tried again)."""
        self.host = host
        self.client = ServiceClient(host)
        self.quick = ServiceClient(host, timeout=min(quick, host.auth_timeout))

    @property
    def online(self) -> bool:
        return bool(self.host.online)

    def _ask(self, op: str, fields: Mapping[str, Any], *, quick: bool = False) -> Mapping[str, Any]:
        answer = (self.quick if quick else self.client).ask(op, fields)
        if not answer.ok:
            raise HostUnavailable("the registry refused a purse request", op=op, reason=answer.reason)
        return answer.result

    def contact(self, purse_id: bytes, counter: int, *, blocked: bool, pending: int | None = None,
                pending_sale: str | None = None) -> Mapping[str, Any]:
        return self._ask("purse_contact", contact_fields(purse_id, counter, blocked=blocked, pending=pending,
                                                         pending_sale=pending_sale), quick=True)

    def load(self, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._ask("purse_load", fields)

    def records(self, sam_id: bytes, items: Sequence[Mapping[str, Any]],
                advices: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        fields: dict[str, Any] = {"sam_id": sam_id.hex(), "items": list(items)}
        if advices:
            fields["advices"] = list(advices)
        return self._ask("purse_records", fields, quick=True)

    def applied(self, purse_id: bytes, script_ids: Sequence[int]) -> int:
        return int(self._ask("purse_applied", {"purse_id": purse_id.hex(),
                                               "script_ids": list(script_ids)})["applied"])

