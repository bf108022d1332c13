"""The simulator's card bureau and SAM fitting, without MQTT (docs/chip-wallet-keys.md).

`fit_sam` fits a simulated PurseSam to a terminal as `forecourt provision sam` does (provisioning.sam,
through the SAM's APDUs), the registry answering in-process (registry.purse.enrol.enrol_sam) on its own
database and keys. `issue_purse_card` is the bureau: the chip makes its key pair, the registry certifies
it and derives the card's keys (registry.purse.enrol.personalise_card), and the chip receives them
(hostsim.cards.purse_card.personalize). Both open the registry's database and keys as the registry does;
each commits its registry rows once the SAM or card is made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.purse_keys import Purpose
from hostsim.cards.fleet import FleetCard
from hostsim.cards.purse_card import PurseCard, personalize
from hostsim.cards.purse_sam import PurseSam
from provisioning.sam import SamFitted
from provisioning.sam import fit_sam as fit_through_apdus
from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import Card
from registry.purse.enrol import WalletSpec, card_wallets, enrol_sam, new_purse_id, personalise_card
from registry.purse.issuer import IssuerKeys

__all__ = ["KEYS_FILE", "WalletSpec", "fit_sam", "issue_purse_card"]

KEYS_FILE = "registry-keys.json"      # in the registry's state directory, as registry.server reads it


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@contextmanager
def _registry(db_url: str, state_dir: Path, now: dt.datetime) -> Iterator[tuple[Session, RegistryKeys,
                                                                                 IssuerKeys]]:
    engine, sessions = open_database(db_url)
    keys = load_or_create_keys(Path(state_dir) / KEYS_FILE)
    try:
        with sessions() as s:
            yield s, keys, IssuerKeys.load(s, keys, now=now)
    finally:
        engine.dispose()


def _unix(now: dt.datetime) -> int:
    return int(now.replace(tzinfo=dt.UTC).timestamp())


def fit_sam(registry_db_url: str, registry_state_dir: Path, terminal: str, sam: PurseSam, *,
            now: dt.datetime | None = None, replace: bool = False) -> SamFitted:
    """Enrol `sam` at `terminal` (an active device of the registry) and personalise it through its APDUs;
    idempotent as provisioning is. now: naive UTC (the registry's clock; default now)."""
    when = now if now is not None else _utcnow()
    with _registry(registry_db_url, registry_state_dir, when) as (s, _, issuer):
        def ask(fields: Mapping[str, Any]) -> Mapping[str, Any]:
            return enrol_sam(s, issuer, terminal=terminal, sam_id=bytes.fromhex(fields["sam_id"]),
                             sam_public_key=bytes.fromhex(fields["sam_public_key"]), now=when,
                             replace=replace, actor="simulator").answer()

        fitted = fit_through_apdus(sam.apdu, ask, now=_unix(when))
        s.commit()
    return fitted


def issue_purse_card(registry_db_url: str, registry_state_dir: Path, *, pan: str,
                     wallets: Sequence[WalletSpec], pin: str, holder: str = "FLEET DRIVER",
                     now: dt.datetime | None = None, on_tear: Callable[[], None] | None = None) -> PurseCard:
    """The fleet card `pan` (a card of the registry, on an account) with a new purse: chip wallets shadowed
    by the registry wallets `wallets` names, each opening at its wallet's balance; pin: the chip's offline
    PIN, the card's own PIN when the registry holds one."""
    when = now if now is not None else _utcnow()
    with _registry(registry_db_url, registry_state_dir, when) as (s, keys, issuer):
        token = keys.token(pan)
        card = s.scalar(select(Card).where(Card.token == token))
        if card is None:
            raise ConfigError("no such card in the registry", card=f"...{pan[-4:]}")
        if card.pin_verifier and keys.pin_verifier(token, pin) != card.pin_verifier:
            raise ConfigError("the chip's PIN must be the card's own PIN", card=f"...{pan[-4:]}")
        purse_id, opening = new_purse_id(s), card_wallets(s, card, wallets)
        card_keys: dict[tuple[Purpose, int], bytes] = {}

        def certify(public_key: bytes) -> bytes:
            """The bureau's HSM: the chip's public key in, its certificate out (and its keys for the chip)."""
            package = personalise_card(s, issuer, card_id=card.id, wallets=wallets, now=when,
                                       card_public_key=public_key, purse_id=purse_id, actor="simulator")
            if package.wallets != opening:
                raise ConfigError("the wallets changed during personalisation", card=f"...{pan[-4:]}")
            card_keys.update(package.keys)
            return package.certificate

        made = personalize(FleetCard(pan, card.expiry, holder), purse_id=purse_id, keys=card_keys, pin=pin,
                           wallets=opening, ca_public_key=issuer.ca_public_key(), certify=certify,
                           on_tear=on_tear)
        s.commit()
    return made
