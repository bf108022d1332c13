"""The simulator's card fixture (fixtures/cards.toml): each card's profile, made into a virtual card."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile
from hostsim.cards.fleet import BlankCard, FleetCard
from hostsim.cards.tag import TagCard

__all__ = ["FIXTURES", "CardProfile", "card_index", "load_cards"]

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class CardProfile:
    name: str
    kind: str
    fields: dict[str, Any]

    def make(self) -> Any:
        if self.kind == "fleet":
            return FleetCard(pan=self.fields["pan"], expiry=self.fields["expiry"],
                             holder=self.fields["holder"])
        if self.kind == "emv":
            return EmvCard.from_profile(self.fields["profile"])
        if self.kind == "tag":
            return TagCard(bytes.fromhex(self.fields["uid"]), self.fields.get("type", "mifare_classic_1k"))
        return BlankCard()

    @property
    def track2(self) -> str | None:
        """The magnetic stripe, for the swipe reader (bank cards only)."""
        if self.kind != "emv":
            return None
        track2 = load_profile(self.fields["profile"]).get("magstripe", {}).get("track2")
        return None if track2 is None else str(track2)


def load_cards(path: Path = FIXTURES / "cards.toml") -> list[CardProfile]:
    """Every card of the fixture: fleet, EMV and blank first (scenarios pick them by index), then any
    further kind (loyalty, gift, attendant, voucher...) in the file's order."""
    doc = tomllib.loads(path.read_text())
    kinds = ["fleet", "emv", "blank"] + [k for k in doc if k not in ("fleet", "emv", "blank")]
    return [CardProfile(c["name"], kind, c) for kind in kinds for c in doc.get(kind, [])
            if isinstance(c, dict) and "name" in c]


def card_index(name_or_profile: str) -> int:
    """Index in load_cards() of a card by its EMV profile name or its picker name."""
    for i, c in enumerate(load_cards()):
        if name_or_profile in (c.name, c.fields.get("profile")):
            return i
    raise KeyError(name_or_profile)
