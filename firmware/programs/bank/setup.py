"""Builds the bank program from [bank] of the terminal's configuration; the devices it needs (the
acquirer links, the stripe reader) are opened by the terminal's device table and passed in."""

from __future__ import annotations

import logging
from typing import Any

from contracts.errors import ConfigError
from contracts.iso8583_spec import DIALECTS
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import StoreAndForward
from firmware.config_files import read_toml
from firmware.emv import load_emv_config
from firmware.keyfile import load_or_create_key
from firmware.programs.bank.advice import AdviceForwarder, Stan
from firmware.programs.bank.program import BankProgram, BankSetup
from firmware.programs.build import ProgramDeps

__all__ = ["EXHAUSTED", "acquirer_dialect", "build", "card_acceptor"]

log = logging.getLogger(__name__)

EXHAUSTED = "exhausted"     # the journal's dukpt_counter once every key of the initial key was used

# ISO 3166 numeric (the EMV terminal country code, 9F1A) -> alpha-3 for field 43's country positions.
_ALPHA3 = {"040": "AUT", "056": "BEL", "203": "CZE", "208": "DNK", "250": "FRA", "276": "DEU", "380": "ITA",
           "442": "LUX", "528": "NLD", "578": "NOR", "616": "POL", "724": "ESP", "752": "SWE", "756": "CHE",
           "826": "GBR", "840": "USA"}


def acquirer_dialect(bank: Any) -> iso.Dialect:
    """The acquirer's ISO 8583 dialect by its name in [bank] dialect (contracts.iso8583_spec.DIALECTS);
    the default dialect when none is named. A second acquirer is a second entry there, not new code."""
    name = str(getattr(bank, "dialect", "") or iso.DIALECT.name)
    if name not in DIALECTS:
        raise ConfigError("unknown acquirer dialect", key="bank.dialect", known=", ".join(sorted(DIALECTS)))
    return DIALECTS[name]


def card_acceptor(bank: Any, terminal_id: str, country_code: bytes) -> iso.Terminal:
    """Fields 32, 41-43 and 49 from [bank]: name_location is "name" or "name, city"; the country comes from
    the EMV terminal country code; acquirer_id (field 32) when [bank] has one."""
    name, _, city = str(bank.name_location).partition(",")
    return iso.Terminal(terminal_id=terminal_id.ljust(8), merchant_id=bank.merchant_id.ljust(15),
                        name_location=name.strip(), city=city.strip(), currency=bank.currency,
                        country=_ALPHA3.get(country_code.hex()[-3:], "   "),
                        acquirer_id=str(getattr(bank, "acquirer_id", "") or ""))


def build(deps: ProgramDeps) -> BankProgram | None:
    """The bank program, or None when no acquirer is configured (bank cards off). Built even with the
    DUKPT keys used up: queued advices and held approvals still need it."""
    cfg, journal = deps.config, deps.journal
    bank, state = cfg.bank, cfg.state_dir
    if not bank.acquirer:
        return None
    emv = load_emv_config(read_toml(state / bank.emv_config, "EMV configuration"))
    saf = StoreAndForward(state / "advices.db", load_or_create_key(state / "saf.key"))
    sale_link = deps.open_device("acquirer", bank.acquirer)
    advice_link = deps.open_device("acquirer", bank.acquirer)
    pinpad = deps.pinpad

    def keys_left() -> bool:
        return pinpad.dukpt_counter is not None

    def after_pin() -> None:
        counter = pinpad.dukpt_counter
        journal.put("dukpt_counter", str(counter) if counter is not None else EXHAUSTED)

    if not keys_left():
        log.error("DUKPT keys exhausted: bank cards are refused until the PIN pad is re-keyed")
    terminal = card_acceptor(bank, cfg.terminal.id, emv.country_code)
    dialect = acquirer_dialect(bank)
    parts: tuple[Any, ...] = (sale_link, advice_link)
    setup = BankSetup(
        emv=emv, terminal=terminal, link=sale_link, saf=saf,
        forwarder=AdviceForwarder(saf, advice_link, timeout=bank.response_timeout, dialect=dialect),
        stan=Stan(lambda: journal.get_value("acquirer_stan"), lambda v: journal.put("acquirer_stan", v)),
        preauth_cents=bank.preauth_cents, response_timeout=bank.response_timeout,
        home_language=cfg.terminal.language, keys_left=keys_left, after_pin=after_pin,
        magstripe=deps.magstripe, parts=parts, dialect=dialect)
    return BankProgram(setup)
