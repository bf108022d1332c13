"""What every service operation (registry.service_desk) works with: the request as asked (Ask) and the
refusal it may answer (Refused). A card number or voucher code is opened here from the request it is
sealed to, under the asking device's PIN key; an attendant is the one whose sign-in ticket the request
carries (registry.service_desk_ticket).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psec.pinblock import decipher_pinblock_iso_4
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, ForecourtError
from contracts.panseal import PanSealError, derive_pan_key, pin_pan, unseal_pan
from contracts.service_messages import ServiceReason as R
from registry import service_desk_ticket as tickets
from registry.keys import RegistryKeys
from registry.models import Attendant, Device, Movement

__all__ = ["Ask", "Refused", "may_act_at"]

log = logging.getLogger(__name__)


class Refused(ForecourtError):
    """A service request the registry says no to, with the reason the terminal shows."""

    def __init__(self, reason: str, message: str, *, tries_left: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason, self.tries_left = reason, tries_left


def may_act_at(row: Attendant | None, station: str) -> bool:
    """An attendant row that exists and may work at `station` ("" stations: any)."""
    return row is not None and (not row.stations or station in row.stations.split(","))


@dataclass
class Ask:
    s: Session
    keys: RegistryKeys
    device: Device
    req: Mapping[str, Any]
    now: dt.datetime

    def _pin_key(self) -> bytes:
        try:
            return self.keys.device_key(self.device.pin_key_hex)
        except ConfigError:
            log.error("device PIN key unusable", extra={"alarm": "device_key", "terminal": self.device.id})
            raise Refused(R.UNAVAILABLE, "device key unusable") from None

    def opened(self, field: str) -> str:
        """The card number or code sealed in `field`, opened for this request."""
        try:
            return unseal_pan(derive_pan_key(self._pin_key()), self.req[field],
                              request_id=self.req["request_id"], terminal=self.req["terminal"],
                              station=self.req["station"])
        except PanSealError:
            log.warning("sealed number does not open", extra={"terminal": self.device.id, "field": field})
            raise Refused(R.UNKNOWN_CARD, "sealed number does not open") from None

    def pin(self, number: str) -> str:
        try:
            return decipher_pinblock_iso_4(self._pin_key(), bytes.fromhex(self.req["pin_block"]),
                                           pin_pan(number))
        except (ValueError, ForecourtError):
            raise Refused(R.WRONG_PIN, "PIN block does not open") from None

    def attendant(self, booked: str | None = None) -> str:
        """The attendant the request names, signed in online at this terminal (the ticket is theirs, for
        this terminal, not expired) and still active and allowed at this station; else NOT_SIGNED_IN.

        `booked`: the ledger key the request books under. A request sent again after the first was booked
        (its answer lost) with that attendant's authentic ticket is let through even when the ticket has
        expired or the attendant was locked since: it books nothing, and answers what was booked."""
        name = self.req["attendant"]
        if tickets.authentic(self.keys, self.req["ticket"], name, self.device.id) is None:
            raise Refused(R.NOT_SIGNED_IN, "no valid sign-in ticket")
        if booked is not None and self.s.scalar(select(Movement.id).where(
                Movement.key == booked, Movement.actor == f"attendant:{name}")) is not None:
            return str(name)
        if not tickets.valid(self.keys, self.req["ticket"], name, self.device.id, self.now):
            raise Refused(R.NOT_SIGNED_IN, "sign-in ticket expired")
        row = self.s.get(Attendant, name)
        if row is None or row.status != "active" or not may_act_at(row, self.req["station"]):
            raise Refused(R.NOT_SIGNED_IN, "attendant may no longer act here")
        return row.id
