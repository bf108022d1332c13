"""Builds the bank-card side of the terminal from [bank] in its configuration (composition root helper)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from firmware.acquirer import messages as iso
from firmware.acquirer.saf import StoreAndForward
from firmware.bank import BankSale, BankSetup
from firmware.bank_advice import AdviceForwarder
from firmware.config import TerminalConfig
from firmware.emv import load_emv_config
from firmware.errors import ConfigError
from firmware.journal import Journal
from firmware.sale import SaleFlow

__all__ = ["EXHAUSTED", "load_dukpt", "open_bank"]

EXHAUSTED = "exhausted"


def _toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML", path=str(path)) from exc


def load_dukpt(path: Path, journal: Journal) -> Any:
    """The PIN pad's AES DUKPT state: initial key and key id from the file, counter from the journal."""
    from drivers.pinpad.dukpt_aes import TerminalDukpt
    raw = _toml(path, "DUKPT key")
    try:
        initial_key, key_id = bytes.fromhex(raw["initial_key"]), bytes.fromhex(raw["key_id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError("DUKPT key file needs hex initial_key and key_id", path=str(path)) from exc
    stored = journal.get_value("dukpt_counter") or "1"
    if stored == EXHAUSTED:
        return None     # every key of this initial key was used: the PIN pad must be re-keyed
    return TerminalDukpt(initial_key, key_id, counter=int(stored))


def open_bank(cfg: TerminalConfig, flow: SaleFlow, pinpad: Any, token_key: bytes) -> tuple[BankSale, list[Any]]:
    """The bank sale and what must be closed at shutdown (links, forwarder, queue, swipe reader)."""
    from drivers.acquirer import AcquirerLink
    from drivers.msr import open_msr

    bank, state = cfg.bank, cfg.state_dir
    host, _, port = bank.acquirer.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("bank.acquirer must be tcp://host:port", key="bank.acquirer")
    emv = load_emv_config(_toml(state / bank.emv_config, "EMV configuration"))
    saf = StoreAndForward(state / "advices.db", token_key_file(state / "saf.key"))
    sale_link = AcquirerLink(host, int(port), response_timeout=bank.response_timeout)
    advice_link = AcquirerLink(host, int(port), response_timeout=bank.response_timeout)
    forwarder = AdviceForwarder(saf, advice_link, timeout=bank.response_timeout)
    msr = open_msr(bank.magstripe)
    terminal = iso.Terminal(terminal_id=cfg.terminal.id[:8].ljust(8), merchant_id=bank.merchant_id[:15].ljust(15),
                            name_location=bank.name_location, currency=bank.currency)
    setup = BankSetup(emv=emv, terminal=terminal, link=sale_link, saf=saf, forwarder=forwarder, pinpad=pinpad,
                      msr=msr, preauth_cents=bank.preauth_cents, response_timeout=bank.response_timeout,
                      after_pin=lambda: flow.journal.put("dukpt_counter", str(pinpad.dukpt_counter or EXHAUSTED)))
    closers: list[Any] = [forwarder, sale_link, advice_link, saf] + ([msr] if msr is not None else [])
    return BankSale(flow, setup), closers


def token_key_file(path: Path) -> bytes:
    from firmware.terminal import load_token_key
    return load_token_key(path)
