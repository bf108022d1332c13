"""The PIN pad's AES DUKPT state at start-up: initial key and key id from its file, the counter from
the journal (persisted before each PIN block leaves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from firmware.config_files import read_toml
from firmware.keyfile import check_private
from firmware.programs.bank.setup import EXHAUSTED
from firmware.sale.journal import Journal

__all__ = ["load_dukpt"]


def load_dukpt(path: Path, journal: Journal) -> Any:
    """A drivers.pinpad.dukpt_aes.TerminalDukpt; None once the keys are exhausted (the PIN pad must be
    re-keyed)."""
    from drivers.pinpad.dukpt_aes import TerminalDukpt

    raw = read_toml(check_private(path), "DUKPT key")
    try:
        initial_key, key_id = bytes.fromhex(raw["initial_key"]), bytes.fromhex(raw["key_id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError("DUKPT key file needs hex initial_key and key_id", path=str(path)) from exc
    stored = journal.get_value("dukpt_counter") or "1"
    if stored == EXHAUSTED:
        return None
    return TerminalDukpt(initial_key, key_id, counter=int(stored))
