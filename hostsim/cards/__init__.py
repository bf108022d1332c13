"""Simulated cards served by hostsim.vpcd or used in-process by drivers.cardreader.memory."""

from hostsim.cards.fleet import FLEET_AID, BlankCard, FleetCard, HostileCard

__all__ = ["FLEET_AID", "BlankCard", "FleetCard", "HostileCard"]
