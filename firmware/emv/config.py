"""Terminal configuration for the EMV kernel: terminal data, accepted AIDs with their TACs, CA keys.

Defaults describe this project's terminal: an unattended automated fuel dispenser (Book 4 Annex A).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.errors import ConfigError

__all__ = ["AidConfig", "EmvConfig", "load_emv_config"]

# Terminal type 25: merchant-operated (2x), unattended, offline with online capability (x5) - Book 4 A1.
# Not 26 (offline only): an AFD with floor limit 0 sends every sale online and needs online PIN. Being
# able to work offline keeps the TAC/IAC default path for "unable to go online".
TERMINAL_TYPE = 0x25
# 9F33 (Book 4 A2): byte 1 magstripe + IC with contacts; byte 2 offline plaintext PIN, online enciphered
# PIN, offline enciphered PIN, no CVM (no signature: nobody to check it); byte 3 SDA, DDA, CDA.
TERMINAL_CAPABILITIES = bytes.fromhex("60D8C8")
# 9F40 (Book 4 A3): goods only; numeric and command keys (PIN pad); cardholder display and printer,
# no attendant; code table 1.
ADDITIONAL_CAPABILITIES = bytes.fromhex("4000A05001")


@dataclass(frozen=True)
class AidConfig:
    """One application the terminal accepts, with its per-AID parameters."""

    aid: bytes
    partial_match: bool = True                       # Application Selection Indicator, Book 1 12.3.1
    app_version: bytes = b"\x00\x8c"                 # 9F09
    tac_default: bytes = bytes.fromhex("DC4000A800")
    tac_denial: bytes = bytes.fromhex("0010000000")
    tac_online: bytes = bytes.fromhex("DC4004F800")
    floor_limit: int = 0                             # minor units; 0 = always online
    target_percent: int = 0                          # random selection, Book 3 10.6.2
    max_target_percent: int = 0
    threshold: int = 0
    default_ddol: bytes = bytes.fromhex("9F3704")


@dataclass(frozen=True)
class EmvConfig:
    aids: tuple[AidConfig, ...]
    ca_keys: Mapping[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    terminal_type: int = TERMINAL_TYPE
    capabilities: bytes = TERMINAL_CAPABILITIES
    additional_capabilities: bytes = ADDITIONAL_CAPABILITIES
    country_code: bytes = b"\x08\x40"               # 9F1A, n3 in two bytes
    currency_code: bytes = b"\x08\x40"              # 5F2A
    currency_exponent: int = 2                      # 5F36
    merchant_category: bytes = b"\x55\x42"          # 9F15: 5542 automated fuel dispensers
    terminal_id: bytes = b"FCT00001"                # 9F1C an8
    merchant_id: bytes = b"FORECOURT000001"         # 9F16 ans15
    ifd_serial: bytes = b"FC000001"                 # 9F1E an8
    transaction_type: int = 0x00                    # 9C: goods and services
    services: bool = False                          # fuel is goods (AUC check, Book 3 10.4.2)
    approved_codes: frozenset[bytes] = frozenset({b"00", b"08", b"10", b"11"})
    velocity_checking: bool = True
    trm_regardless_of_aip: bool = True              # floor limit must apply even if AIP says no

    def aid_config(self, aid: bytes) -> AidConfig | None:
        """The configured entry that selected aid (exact, else the longest partial match)."""
        best: AidConfig | None = None
        for entry in self.aids:
            if aid == entry.aid:
                return entry
            if (entry.partial_match and aid.startswith(entry.aid)
                    and (best is None or len(entry.aid) > len(best.aid))):
                best = entry
        return best


def _hex(raw: Mapping[str, Any], key: str, default: bytes) -> bytes:
    value = raw.get(key)
    if value is None:
        return default
    try:
        return bytes.fromhex(str(value).replace(" ", ""))
    except ValueError as exc:
        raise ConfigError("value is not hex", key=key) from exc


def load_emv_config(raw: Mapping[str, Any]) -> EmvConfig:
    """Build from a TOML table: [[aid]] (aid, tac_*, floor_limit...), [[ca_key]] (rid, index, modulus,
    exponent as hex), country/currency codes as hex strings."""
    aids = []
    for entry in raw.get("aid", []):
        if "aid" not in entry:
            raise ConfigError("[[aid]] needs aid", key="aid")
        base = AidConfig(aid=_hex(entry, "aid", b""))
        aids.append(AidConfig(
            aid=base.aid, partial_match=bool(entry.get("partial_match", True)),
            app_version=_hex(entry, "app_version", base.app_version),
            tac_default=_hex(entry, "tac_default", base.tac_default),
            tac_denial=_hex(entry, "tac_denial", base.tac_denial),
            tac_online=_hex(entry, "tac_online", base.tac_online),
            floor_limit=int(entry.get("floor_limit", 0)),
            target_percent=int(entry.get("target_percent", 0)),
            max_target_percent=int(entry.get("max_target_percent", 0)),
            threshold=int(entry.get("threshold", 0)),
            default_ddol=_hex(entry, "default_ddol", base.default_ddol)))
    if not aids:
        raise ConfigError("EMV configuration lists no AID", key="aid")
    keys: dict[tuple[str, int], tuple[int, int]] = {}
    for key in raw.get("ca_key", []):
        try:
            keys[(str(key["rid"]).upper(), int(str(key["index"]), 16))] = (
                int(str(key["modulus"]), 16), int(str(key["exponent"]), 16))
        except (KeyError, ValueError) as exc:
            raise ConfigError("[[ca_key]] needs hex rid, index, modulus, exponent", key="ca_key") from exc
    return EmvConfig(aids=tuple(aids), ca_keys=keys,
                     country_code=_hex(raw, "country_code", b"\x08\x40"),
                     currency_code=_hex(raw, "currency_code", b"\x08\x40"),
                     currency_exponent=int(raw.get("currency_exponent", 2)),
                     terminal_id=str(raw.get("terminal_id", "FCT00001")).encode("ascii")[:8].ljust(8),
                     merchant_id=(str(raw.get("merchant_id", "FORECOURT000001"))
                                  .encode("ascii")[:15].ljust(15)))
