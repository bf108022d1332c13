"""The simulator's bank side: the acquirer host that knows every test card's issuer keys and PIN, and the
terminal's bank files (EMV configuration with the test CA keys, the PIN pad's AES DUKPT initial key).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from psec.pinblock import decipher_pinblock_iso_4, decode_pinblock_iso_0

from contracts.iso8583_dialect import PIN_ISO0_TDEA2, PIN_ISO4_AES
from drivers.pinpad.dukpt_aes import derive_initial_key, host_derive_working_key
from hostsim.acquirer_host import AcquirerHost
from hostsim.cards.emv_profile import PROFILES, load_profile, profile_names
from provisioning.keys import install_dukpt

__all__ = ["BDK", "KEY_ID", "clear_pin", "make_acquirer", "write_bank_files"]

# ANSI X9.24-3-2017 supplement test BDK and initial key ID: test values, never for production.
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
KEY_ID = bytes.fromhex("1234567890123456")

# The terminal's accepted AIDs with their application version numbers (9F09).
_AIDS = (("A0000000031010", "008C"), ("A0000000041010", "0002"), ("A0000000043060", "0002"))


def _cards() -> list[dict[str, Any]]:
    return [p["card"] for p in map(load_profile, profile_names()) if "card" in p]


def make_acquirer(rules: Callable[[dict[str, str]], str]) -> AcquirerHost:
    """A host that verifies the ARQC with each test card's issuer key and the PIN under the BDK, in the PIN
    block format of the host's dialect."""
    profiles = [load_profile(n) for n in profile_names()]
    issuer_keys = {p["card"]["pan"]: bytes.fromhex(p["keys"]["imk_ac"]) for p in profiles if "keys" in p}
    pins = {c["pan"]: c["pin"] for c in _cards() if "pin" in c}

    def pin_ok(block: bytes, ksn_hex: str, pan: str) -> bool:
        try:
            pin = clear_pin(BDK, block, bytes.fromhex(ksn_hex), pan, host.dialect.pin_block)
            return pin == pins.get(pan)
        except ValueError:
            return False

    host = AcquirerHost(issuer_keys, pin_ok, rules)     # pin_ok reads the host's dialect when it runs
    return host


def clear_pin(bdk: bytes, block: bytes, ksn: bytes, pan: str, fmt: str) -> str:
    """The PIN in an AES DUKPT PIN block: format 4 under the AES working key, or format 0 under the 2TDEA
    working key (ANSI X9.24-3-2017 6.3.3). ValueError when the block does not open."""
    if fmt == PIN_ISO4_AES:
        return str(decipher_pinblock_iso_4(host_derive_working_key(bdk, ksn, "pin_encryption"), block, pan))
    if fmt != PIN_ISO0_TDEA2 or len(block) != 8:
        raise ValueError("not a PIN block of this format")
    key = host_derive_working_key(bdk, ksn, "pin_encryption", "TDEA2")
    decryptor = Cipher(TripleDES(key + key[:8]), modes.ECB()).decryptor()
    return str(decode_pinblock_iso_0(decryptor.update(block) + decryptor.finalize(), pan))


def write_bank_files(directory: Path) -> None:
    """emv.toml and dukpt.toml for the terminal's state directory."""
    aids = "".join(f'\n[[aid]]\naid = "{aid}"\napp_version = "{version}"\n' for aid, version in _AIDS)
    ca_keys = (PROFILES / "ca_keys.toml").read_text()
    (directory / "emv.toml").write_text(
        "# written by the host simulator: test CA keys only\n"
        'country_code = "0276"\ncurrency_code = "0978"\nterminal_id = "FCT00001"\n' + aids + "\n" + ca_keys)
    initial_key = derive_initial_key(BDK, KEY_ID)
    install_dukpt(directory, initial_key, KEY_ID,
                  note="written by the host simulator from the X9.24-3 test BDK")
