"""The network's own fleet cards: read from the chip, PIN and limits checked by the registry online,
the pump preset by volume, the sale settled against the registry's authorization when it syncs."""

from firmware.programs.fleet.card import FLEET_AID, FleetCardData, read_fleet_card
from firmware.programs.fleet.program import FleetProgram

__all__ = ["FLEET_AID", "FleetCardData", "FleetProgram", "read_fleet_card"]
