"""Builds the bank-card side of the terminal from [bank] in its configuration (composition root helper)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ConfigError
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import StoreAndForward
from firmware.bank import BankSale, BankSetup
from firmware.bank_advice import AdviceForwarder
from firmware.bank_prompts import DukptPad, Prompts
from firmware.config import TerminalConfig
from firmware.emv import load_emv_config
from firmware.journal import Journal
from firmware.keyfile import load_or_create_key
from firmware.sale import SaleFlow

if TYPE_CHECKING:
    from drivers.pinpad.dukpt_aes import TerminalDukpt

__all__ = ["EXHAUSTED", "load_dukpt", "open_bank"]

EXHAUSTED = "exhausted"     # the journal's dukpt_counter once every key of the initial key was used


def _toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML", path=str(path)) from exc


def load_dukpt(path: Path, journal: Journal) -> TerminalDukpt | None:
    """The PIN pad's AES DUKPT state: initial key and key id from the file, counter from the journal;
    None once the keys are exhausted (the PIN pad must be re-keyed)."""
    from drivers.pinpad.dukpt_aes import TerminalDukpt
    raw = _toml(path, "DUKPT key")
    try:
        initial_key, key_id = bytes.fromhex(raw["initial_key"]), bytes.fromhex(raw["key_id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError("DUKPT key file needs hex initial_key and key_id", path=str(path)) from exc
    stored = journal.get_value("dukpt_counter") or "1"
    if stored == EXHAUSTED:
        return None
    return TerminalDukpt(initial_key, key_id, counter=int(stored))


def open_bank(cfg: TerminalConfig, flow: SaleFlow, pinpad: DukptPad) -> BankSale:
    """The bank sale with its acquirer links, advice queue and forwarder, swipe reader and prompts."""
    from drivers.acquirer import AcquirerLink
    from drivers.msr import open_msr

    bank, state = cfg.bank, cfg.state_dir
    host, _, port = bank.acquirer.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("bank.acquirer must be tcp://host:port", key="bank.acquirer")
    emv = load_emv_config(_toml(state / bank.emv_config, "EMV configuration"))
    saf = StoreAndForward(state / "advices.db", load_or_create_key(state / "saf.key"))
    sale_link = AcquirerLink(host, int(port), response_timeout=bank.response_timeout)
    advice_link = AcquirerLink(host, int(port), response_timeout=bank.response_timeout)
    msr = open_msr(bank.magstripe)

    def after_pin() -> None:
        counter = pinpad.dukpt_counter
        flow.journal.put("dukpt_counter", str(counter) if counter is not None else EXHAUSTED)

    prompts = Prompts(flow.dev.panel, pinpad, timeout=cfg.timeouts.pin_entry, home=cfg.terminal.language,
                      after_pin=after_pin)
    terminal = iso.Terminal(terminal_id=cfg.terminal.id.ljust(8), merchant_id=bank.merchant_id.ljust(15),
                            name_location=bank.name_location, currency=bank.currency)
    setup = BankSetup(emv=emv, terminal=terminal, link=sale_link, saf=saf,
                      forwarder=AdviceForwarder(saf, advice_link, timeout=bank.response_timeout),
                      prompts=prompts, msr=msr, preauth_cents=bank.preauth_cents,
                      response_timeout=bank.response_timeout,
                      parts=(sale_link, advice_link) + ((msr,) if msr is not None else ()))
    return BankSale(flow, setup)
