"""The network's own fleet cards (chip, stripe, contactless tag): PIN, prompts and limits checked by the
registry online, the pump preset to its allowance, the sale settled against the registry's authorization
when it syncs; offline within the configuration's limits unless the stop-list names the card."""

from firmware.programs.fleet.card import FLEET_AID, FleetCardData, read_fleet_card
from firmware.programs.fleet.media import FleetCard
from firmware.programs.fleet.program import FleetProgram

__all__ = ["FLEET_AID", "FleetCard", "FleetCardData", "FleetProgram", "read_fleet_card"]
