"""The chip purse program (docs/chip-wallets.md): fuel paid from wallets on the card, through the SAM."""

from firmware.programs.purse.program import PurseProgram

__all__ = ["PurseProgram"]
