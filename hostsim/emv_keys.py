"""A test EMV PKI (CA, issuer and ICC RSA keys) and the Book 2 certificates and signatures built from it.

Every signature here is EMV "RSA with message recovery": the signer builds a block that starts with '6A'
and ends with 'BC', carries a SHA-1 hash over the recovered fields plus data that is not in the block, and
raises it to the private exponent (raw RSA, no padding scheme; EMV 4.3 Book 2 A2.1).

The keys are TEST KEYS, generated once by `generate_pki_toml()` and kept in fixtures/emv/pki.toml; the CA
private keys in that file are test data for the simulator, nothing else.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import ConfigError

__all__ = [
    "CA_KEYS_TOML",
    "PKI_TOML",
    "CaKey",
    "IccKey",
    "IssuerKey",
    "Pki",
    "PublicKeyCertificate",
    "RsaKey",
    "ca_keys_toml",
    "ca_public_key_checksum",
    "ca_public_keys",
    "generate_pki_toml",
    "icc_public_key_certificate",
    "issuer_public_key_certificate",
    "load_pki",
    "signed_dynamic_application_data",
    "signed_static_application_data",
]

FIXTURES = Path(__file__).parent / "fixtures" / "emv"
PKI_TOML = FIXTURES / "pki.toml"
CA_KEYS_TOML = FIXTURES / "ca_keys.toml"

HEADER = 0x6A           # Book 2 tables 13, 14 (recovered data header)
TRAILER = 0xBC
HASH_SHA1 = 0x01        # Hash Algorithm Indicator, Book 2 annex B2.3
PK_ALGO_RSA = 0x01      # Public Key Algorithm Indicator, Book 2 annex B2.1
PAD = 0xBB              # pad pattern, Book 2 5.3 / 6.5


@dataclass(frozen=True)
class RsaKey:
    """An RSA key pair as integers; EMV works on raw big-endian blocks of exactly len(modulus) bytes."""

    n: int
    e: int
    d: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    @property
    def modulus(self) -> bytes:
        return self.n.to_bytes(self.size, "big")

    @property
    def exponent(self) -> bytes:
        return self.e.to_bytes((self.e.bit_length() + 7) // 8, "big")

    def private(self, block: bytes) -> bytes:
        """Raw RSA with the private exponent: signing, and deciphering an enciphered PIN (Book 2 7.2)."""
        value = int.from_bytes(block, "big")
        if len(block) != self.size or value >= self.n:
            raise ValueError(f"RSA block must be {self.size} bytes and below the modulus")
        return pow(value, self.d, self.n).to_bytes(self.size, "big")

    def public(self, block: bytes) -> bytes:
        """Raw RSA with the public exponent ("recovery" in Book 2)."""
        value = int.from_bytes(block, "big")
        if len(block) != self.size or value >= self.n:
            raise ValueError(f"RSA block must be {self.size} bytes and below the modulus")
        return pow(value, self.e, self.n).to_bytes(self.size, "big")


@dataclass(frozen=True)
class CaKey:
    rid: bytes
    index: int
    expiry: dt.date
    key: RsaKey


@dataclass(frozen=True)
class IssuerKey:
    name: str
    ca: CaKey
    issuer_id: str          # leftmost 3-8 PAN digits (Book 2 table 6, Issuer Identifier)
    serial: bytes           # certificate serial number, 3 bytes
    expiry: str             # certificate expiration date MMYY
    key: RsaKey


@dataclass(frozen=True)
class IccKey:
    name: str
    issuer: IssuerKey
    key: RsaKey


@dataclass(frozen=True)
class Pki:
    cas: dict[str, CaKey]
    issuers: dict[str, IssuerKey]
    iccs: dict[str, IccKey]


@dataclass(frozen=True)
class PublicKeyCertificate:
    """A certificate and what the card also hands out beside it: remainder and exponent."""

    certificate: bytes      # tag 90 or 9F46
    remainder: bytes        # tag 92 or 9F48 (empty: leave the tag out)
    exponent: bytes         # tag 9F32 or 9F47


def _sign(signer: RsaKey, fields: bytes, hashed_after: bytes) -> bytes:
    """6A || fields || SHA-1(fields || hashed_after) || BC, signed (Book 2 5.1, 6.1)."""
    digest = hashlib.sha1(fields + hashed_after).digest()
    block = bytes([HEADER]) + fields + digest + bytes([TRAILER])
    if len(block) != signer.size:
        raise ValueError(f"recovered data would be {len(block)} bytes, the signing key is {signer.size}")
    return signer.private(block)


def _split(modulus: bytes, room: int) -> tuple[bytes, bytes]:
    """Leftmost `room` bytes in the certificate (padded with BB), the rest as the remainder."""
    if len(modulus) <= room:
        return modulus + bytes([PAD]) * (room - len(modulus)), b""
    return modulus[:room], modulus[room:]


def _bcd_padded(digits: str, size: int) -> bytes:
    if not digits.isdigit() or len(digits) > 2 * size:
        raise ConfigError("digits do not fit the field", size=size)
    return bytes.fromhex(digits.ljust(2 * size, "F"))


def issuer_public_key_certificate(issuer: IssuerKey) -> PublicKeyCertificate:
    """Issuer Public Key Certificate (tag 90), format '02', signed by the CA (Book 2 5.3, table 6)."""
    ca_size, key = issuer.ca.key.size, issuer.key
    in_cert, remainder = _split(key.modulus, ca_size - 36)
    fields = (bytes([0x02]) + _bcd_padded(issuer.issuer_id, 4) + bytes.fromhex(issuer.expiry) + issuer.serial
              + bytes([HASH_SHA1, PK_ALGO_RSA, key.size, len(key.exponent)]) + in_cert)
    return PublicKeyCertificate(_sign(issuer.ca.key, fields, remainder + key.exponent), remainder,
                                key.exponent)


def icc_public_key_certificate(icc: RsaKey, issuer: RsaKey, pan: str, expiry_mmyy: str, serial: bytes,
                               static_data: bytes) -> PublicKeyCertificate:
    """ICC Public Key Certificate (tag 9F46), format '04', signed by the issuer (Book 2 6.4, table 14).

    The hash also covers the static data to be authenticated (Book 3 10.3), so an ICC certificate
    authenticates the card's records as SDA would.
    """
    in_cert, remainder = _split(icc.modulus, issuer.size - 42)
    fields = (bytes([0x04]) + _bcd_padded(pan, 10) + bytes.fromhex(expiry_mmyy) + serial
              + bytes([HASH_SHA1, PK_ALGO_RSA, icc.size, len(icc.exponent)]) + in_cert)
    return PublicKeyCertificate(_sign(issuer, fields, remainder + icc.exponent + static_data), remainder,
                                icc.exponent)


def signed_static_application_data(issuer: RsaKey, dac: bytes, static_data: bytes) -> bytes:
    """Signed Static Application Data (tag 93), format '03',
    with the Data Authentication Code (Book 2 5.4)."""
    if len(dac) != 2:
        raise ConfigError("Data Authentication Code must be 2 bytes", length=len(dac))
    fields = bytes([0x03, HASH_SHA1]) + dac + bytes([PAD]) * (issuer.size - 26)
    return _sign(issuer, fields, static_data)


def signed_dynamic_application_data(icc: RsaKey, icc_dynamic_data: bytes,
                                    terminal_dynamic_data: bytes) -> bytes:
    """Signed Dynamic Application Data (tag 9F4B), format '05' (Book 2 6.5 table 17; CDA: 6.6 table 19).

    For DDA the terminal dynamic data is the DDOL-related data of INTERNAL AUTHENTICATE; for CDA it is the
    Unpredictable Number and the ICC dynamic data carries CID, AC and the transaction data hash code.
    """
    pad = icc.size - len(icc_dynamic_data) - 25
    if pad < 0:
        raise ValueError("ICC dynamic data too long for the ICC key")
    fields = bytes([0x05, HASH_SHA1, len(icc_dynamic_data)]) + icc_dynamic_data + bytes([PAD]) * pad
    return _sign(icc, fields, terminal_dynamic_data)


# -- the stored test PKI ------------------------------------------------------------------------------

def _rsa_from_pem(pem: str, where: str) -> RsaKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except ValueError as exc:
        raise ConfigError("unreadable private key in the test PKI", key=where) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("test PKI keys must be RSA", key=where)
    numbers = key.private_numbers()
    return RsaKey(numbers.public_numbers.n, numbers.public_numbers.e, numbers.d)


def _parse_pki(doc: dict[str, object]) -> Pki:
    try:
        cas = {name: CaKey(bytes.fromhex(c["rid"]), int(c["index"], 16), dt.date.fromisoformat(c["expiry"]),
                           _rsa_from_pem(c["private_key"], f"ca.{name}"))
               for name, c in doc["ca"].items()}  # type: ignore[attr-defined]
        issuers = {name: IssuerKey(name, cas[i["ca"]], i["issuer_id"], bytes.fromhex(i["serial"]),
                                   i["expiry"], _rsa_from_pem(i["private_key"], f"issuer.{name}"))
                   for name, i in doc["issuer"].items()}  # type: ignore[attr-defined]
        iccs = {name: IccKey(name, issuers[k["issuer"]], _rsa_from_pem(k["private_key"], f"icc.{name}"))
                for name, k in doc["icc"].items()}  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("malformed test PKI", error=repr(exc)) from exc
    for issuer in issuers.values():
        if issuer.key.size > issuer.ca.key.size:
            raise ConfigError("issuer key longer than its CA key", issuer=issuer.name)
    for icc in iccs.values():
        if icc.key.size > icc.issuer.key.size:
            raise ConfigError("ICC key longer than its issuer key", icc=icc.name)
    return Pki(cas, issuers, iccs)


@functools.cache
def load_pki(path: Path = PKI_TOML) -> Pki:
    """The test PKI, parsed once per path."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("cannot read the test PKI", path=str(path)) from exc
    return _parse_pki(doc)


def ca_public_keys(path: Path = PKI_TOML) -> dict[tuple[str, int], tuple[int, int]]:
    """{(RID hex, CA key index): (modulus, exponent)} for the terminal's CA key table."""
    return {(ca.rid.hex().upper(), ca.index): (ca.key.n, ca.key.e) for ca in load_pki(path).cas.values()}


def ca_public_key_checksum(ca: CaKey) -> bytes:
    """SHA-1 over RID, index, modulus and exponent: the check value terminals keep (Book 2 11.2.2)."""
    return hashlib.sha1(ca.rid + bytes([ca.index]) + ca.key.modulus + ca.key.exponent).digest()


def ca_keys_toml(pki: Pki) -> str:
    """fixtures/emv/ca_keys.toml: the CA public keys as the terminal configuration reads them."""
    lines = [("# Test CA public keys for the terminal "
              "(generated from pki.toml by hostsim.emv_keys.ca_keys_toml)."),
             "# NOT production keys: they verify only the simulator's test cards.", ""]
    for ca in pki.cas.values():
        lines += ["[[ca_key]]", f'rid = "{ca.rid.hex().upper()}"', f'index = "{ca.index:02X}"',
                  f'modulus = "{ca.key.modulus.hex().upper()}"',
                  f'exponent = "{ca.key.exponent.hex().upper()}"',
                  f'expiry = "{ca.expiry.isoformat()}"', 'hash_algorithm = "01"',
                  f'checksum = "{ca_public_key_checksum(ca).hex().upper()}"', ""]
    return "\n".join(lines)


def generate_pki_toml() -> str:
    """Fresh test keys in pki.toml form (run once; the result is committed as test data)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def pem(bits: int, exponent: int) -> str:
        key = rsa.generate_private_key(public_exponent=exponent, key_size=bits)
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode("ascii").strip()

    out = ["# TEST EMV PKI for the host simulator's virtual cards. Test keys only, committed on purpose:",
           "# a test CA private key is test data. Generated by hostsim.emv_keys.generate_pki_toml().",
           "# CA 1408 bits, issuers 1152 bits (so tag 92 is present), ICC 1024 bits (9F48 present).", ""]
    for name, rid, index in (("visa", "A000000003", "92"), ("mastercard", "A000000004", "F1")):
        out += [f"[ca.{name}]", f'rid = "{rid}"', f'index = "{index}"', 'expiry = "2035-12-31"',
                f'private_key = """\n{pem(1408, 3)}\n"""', ""]
    for name, ca, issuer_id, serial in (("visa", "visa", "476173", "0A0001"),
                                        ("mastercard", "mastercard", "541333", "0B0001")):
        out += [f"[issuer.{name}]", f'ca = "{ca}"', f'issuer_id = "{issuer_id}"', f'serial = "{serial}"',
                'expiry = "1234"', f'private_key = """\n{pem(1152, 3)}\n"""', ""]
    for name, issuer, exponent in (("visa_dda", "visa", 3), ("mc_cda", "mastercard", 65537),
                                   ("maestro_dda", "mastercard", 3)):
        out += [f"[icc.{name}]", f'issuer = "{issuer}"', f'private_key = """\n{pem(1024, exponent)}\n"""', ""]
    return "\n".join(out)
