"""Builds the loyalty adjunct: lookups through the registry's service requests, the programme from the
signed configuration's "loyalty" program entry (contracts.loyalty.programme_doc's form)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from contracts.errors import MessageError
from contracts.loyalty import Programme, programme_from_doc
from firmware.programs.build import ProgramDeps
from firmware.programs.loyalty.adjunct import LoyaltyAdjunct
from firmware.service_client import ServiceClient

__all__ = ["build", "configured_group", "configured_programme", "configured_timezone"]

log = logging.getLogger(__name__)


def configured_programme(body: Mapping[str, Any] | None) -> Programme | None:
    """The programme in a configuration body; None when it has none (disabled, or not published) or one
    the terminal cannot read (logged: the receipt then says the registry books the points)."""
    entry = next((p for p in (body or {}).get("programs", ()) if p.get("name") == "loyalty"), None)
    if entry is None or not entry.get("enabled"):
        return None
    try:
        return programme_from_doc(entry.get("settings", {}))
    except MessageError as exc:
        log.warning("loyalty programme in the configuration unreadable", extra={"error": str(exc)})
        return None


def configured_timezone(body: Mapping[str, Any] | None) -> str | None:
    """The station's time zone a configuration body gives ("timezone", an IANA name), or None."""
    zone = (body or {}).get("timezone")
    return zone if isinstance(zone, str) and zone else None


def configured_group(body: Mapping[str, Any] | None, product: str) -> str:
    """A product's group as the configuration gives it ("product_groups"); "fuel" when it gives none."""
    groups = (body or {}).get("product_groups")
    group = groups.get(product) if isinstance(groups, dict) else None
    return group if isinstance(group, str) and group else "fuel"


def build(deps: ProgramDeps) -> LoyaltyAdjunct:
    host = deps.registry
    return LoyaltyAdjunct(host, ServiceClient(host).ask, station=deps.config.terminal.station,
                          programme=lambda: configured_programme(host.configs.current),
                          iins=deps.config.loyalty.iins, language=deps.config.terminal.language,
                          timezone=lambda: configured_timezone(host.configs.current),
                          group=lambda product: configured_group(host.configs.current, product))
