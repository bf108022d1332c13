"""Loyalty cards at the terminal: a card shown before paying rides along the payment; its points are
booked by the registry from the synced sale and printed on the receipt (docs/terminal_loyalty.md)."""

from firmware.programs.loyalty.adjunct import LoyaltyAdjunct
from firmware.programs.loyalty.card import LOYALTY_IINS, LoyaltyCard, loyalty_card

__all__ = ["LOYALTY_IINS", "LoyaltyAdjunct", "LoyaltyCard", "loyalty_card"]
