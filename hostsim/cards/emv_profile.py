"""Personalising a simulated EMV card from a profile (a TOML table, see fixtures/emv/*.toml).

The profile gives the card data and the record layout; this module computes the derived data objects (PAN,
dates, track 2 equivalent, certificates from the test PKI), builds the records, the FCIs and the PSE
directory, and checks that the AFL, the DOLs and the ODA records hang together.
"""

from __future__ import annotations

import calendar
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError, MessageError
from firmware.tlv import encode
from hostsim import emv_keys
from hostsim.cards.atr import build_atr, check_emv_atr
from hostsim.cards.emv_crypto import AC_TERMINAL_TAGS, CardCrypto

__all__ = ["PROFILES", "PSE_NAME", "PSE_SFI", "Personalisation", "dol_values", "load_profile", "parse_dol",
           "personalise", "profile_names"]

PROFILES = Path(__file__).resolve().parent.parent / "fixtures" / "emv"
PSE_NAME = b"1PAY.SYS.DDF01"
PSE_SFI = 1
_CERT_TAGS = {0x93, 0x9F46, 0x9F47, 0x9F48}      # depend on the static data: never inside ODA records


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml") if p.stem not in ("pki", "ca_keys"))


def load_profile(name: str | Path) -> dict[str, Any]:
    """A profile by name (fixtures/emv/<name>.toml) or path."""
    path = Path(name) if isinstance(name, Path) or name.endswith(".toml") else PROFILES / f"{name}.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("cannot read EMV card profile", path=str(path)) from exc


def _hex(value: object, key: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError("expected a hex string", key=key)
    try:
        return bytes.fromhex(value.replace(" ", ""))
    except ValueError as exc:
        raise ConfigError("not a hex string", key=key) from exc


def _digits(value: object, key: str, sizes: range) -> str:
    if not (isinstance(value, str) and value.isdigit() and len(value) in sizes):
        raise ConfigError(f"expected {sizes.start}-{sizes.stop - 1} digits", key=key)
    return value


def _yymm(value: object, key: str) -> tuple[int, int]:
    text = _digits(value, key, range(4, 5))
    month = int(text[2:])
    if not 1 <= month <= 12:
        raise ConfigError("month out of range", key=key)
    return 2000 + int(text[:2]), month


def _luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A Data Object List: tags and lengths without values (Book 3 5.4)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(dol):
        tag = dol[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while i < len(dol) and dol[i] & 0x80:
                tag = (tag << 8) | dol[i]
                i += 1
            if i >= len(dol):
                raise ConfigError("DOL tag truncated", dol=dol.hex())
            tag = (tag << 8) | dol[i]
            i += 1
        if i >= len(dol):
            raise ConfigError("DOL length missing", dol=dol.hex())
        out.append((tag, dol[i]))
        i += 1
    return out


def dol_values(dol: list[tuple[int, int]], data: bytes) -> dict[int, bytes] | None:
    """Split DOL-related data into values by tag (Book 3 5.4); None when the length is wrong."""
    if len(data) != sum(length for _, length in dol):
        return None
    values: dict[int, bytes] = {}
    offset = 0
    for tag, length in dol:
        values[tag] = data[offset:offset + length]
        offset += length
    return values


@dataclass(frozen=True)
class Personalisation:
    """Everything the card's APDU handler serves, computed once from the profile."""

    chip: bool
    atr: bytes
    aid: bytes
    pse: bool
    pse_fci: bytes
    pse_records: dict[int, bytes]
    fci: bytes
    pdol: list[tuple[int, int]]
    aip: bytes
    afl: bytes
    records: dict[tuple[int, int], bytes]
    cdol1: list[tuple[int, int]]
    cdol2: list[tuple[int, int]]
    pin: str
    pin_try_limit: int
    pin_try_counter: int
    atc: int
    crypto: CardCrypto | None
    icc_key: emv_keys.RsaKey | None
    gpo_format: int
    gen_ac_format: int
    internal_auth_format: int
    offline_tc: bool
    script_mac: bool
    put_data_tags: frozenset[int]
    track1: str | None
    track2: str | None
    pan: str
    chip_fault: bytes | None = None      # every APDU answered with this status word (a broken chip)
    protocol: int = 1                    # T=0 or T=1, the first protocol the ATR offers


def _static_data(afl: bytes, records: dict[tuple[int, int], bytes], aip: bytes,
                 sda_tags: bytes | None) -> bytes:
    """Static data to be authenticated (Book 3 10.3): ODA records (SFI 1-10 without tag 70 and length)."""
    out = bytearray()
    for i in range(0, len(afl), 4):
        sfi, first, _, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        for number in range(first, first + oda):
            record = records[(sfi, number)]
            if sfi <= 10:
                header = 2 if record[1] < 0x80 else 2 + (record[1] & 0x7F)
                out += record[header:]
            else:
                out += record
    if sda_tags is not None:
        if sda_tags != b"\x82":
            raise ConfigError("Static Data Authentication Tag List may only hold 82 (Book 3 10.3)")
        out += aip
    return bytes(out)


def _check_afl(afl: bytes, records: dict[tuple[int, int], bytes]) -> set[tuple[int, int]]:
    """Every record the AFL names exists (Book 3 10.2); returns the ODA records."""
    if not afl or len(afl) % 4:
        raise ConfigError("AFL must be groups of 4 bytes", afl=afl.hex())
    oda: set[tuple[int, int]] = set()
    for i in range(0, len(afl), 4):
        sfi, first, last, count = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first or count > last - first + 1:
            raise ConfigError("malformed AFL entry", entry=afl[i:i + 4].hex())
        for number in range(first, last + 1):
            if (sfi, number) not in records:
                raise ConfigError("AFL names a record the profile does not define", sfi=sfi, record=number)
        oda.update((sfi, n) for n in range(first, first + count))
    return oda


def _chip_fault(value: object) -> bytes:
    """An ISO/IEC 7816-4 error status word: SW1 64-6F, but not 6C (a T=0 procedure: resend with Le)."""
    sw = _hex(value, "chip_fault")
    if len(sw) != 2 or not 0x64 <= sw[0] <= 0x6F or sw[0] == 0x6C:
        raise ConfigError("chip_fault must be an error status word (SW1 64-6F, not 6C)", key="chip_fault")
    return sw


def _atr(profile: dict[str, Any]) -> tuple[bytes, int]:
    """The profile's ATR (key atr) or a basic ATR for card.protocol (0 or 1, default 1), checked against the
    EMV Book 1 section 8 rules; returns it with the protocol it offers first."""
    protocol = profile.get("card", {}).get("protocol", 1)
    try:
        atr = _hex(profile["atr"], "atr") if "atr" in profile else build_atr(b"FCEMV01", int(protocol))
        return atr, check_emv_atr(atr).protocol
    except MessageError as exc:
        raise ConfigError("ATR a conforming EMV terminal would reject", key="atr", why=str(exc)) from exc


def personalise(profile: dict[str, Any], pki: emv_keys.Pki | None = None) -> Personalisation:
    """Build the card image. Raises ConfigError naming the profile key that is wrong."""
    card, app = profile.get("card", {}), profile.get("application", {})
    proc, keys, extra = profile.get("processing", {}), profile.get("keys", {}), profile.get("data", {})
    magstripe = profile.get("magstripe", {})
    atr, protocol = _atr(profile)
    pan = _digits(card.get("pan"), "card.pan", range(12, 20))
    if not _luhn_ok(pan):
        raise ConfigError("PAN fails the Luhn check", key="card.pan")
    track1, track2 = magstripe.get("track1"), magstripe.get("track2")
    chip = bool(profile.get("chip", True))
    chip_fault = _chip_fault(profile["chip_fault"]) if "chip_fault" in profile else None
    if chip_fault is not None and not chip:
        raise ConfigError("chip_fault needs a chip (chip = true)", key="chip_fault")
    if not chip or chip_fault is not None:     # nothing on the chip is ever read: no application to build
        return Personalisation(chip, atr, b"", False, b"", {}, b"", [], b"", b"", {}, [], [], "", 0, 0, 0,
                               None, None, 1, 1, 1, False, False, frozenset(), track1, track2, pan,
                               chip_fault, protocol)
    pki = pki or emv_keys.load_pki()
    psn = _digits(card.get("psn", "00"), "card.psn", range(2, 3))
    exp_year, exp_month = _yymm(card.get("expiry"), "card.expiry")
    eff_year, eff_month = _yymm(card.get("effective", "2001"), "card.effective")
    service = _digits(card.get("service_code", "201"), "card.service_code", range(3, 4))
    expiry = f"{exp_year % 100:02d}{exp_month:02d}{calendar.monthrange(exp_year, exp_month)[1]:02d}"
    track2_eq = f"{pan}D{expiry[:4]}{service}{card.get('track2_discretionary', '00000')}"
    data: dict[int, bytes] = {
        0x5A: bytes.fromhex(pan + "F" * (len(pan) % 2)),
        0x5F24: bytes.fromhex(expiry),
        0x5F25: bytes.fromhex(f"{eff_year % 100:02d}{eff_month:02d}01"),
        0x5F34: bytes.fromhex(psn),
        0x57: bytes.fromhex(track2_eq + "F" * (len(track2_eq) % 2)),
        0x5F30: bytes.fromhex("0" + service),
        0x5F20: str(card.get("holder", "/")).encode("ascii"),
    }
    for tag_hex, value in extra.items():
        data[int(tag_hex, 16)] = _hex(value, f"data.{tag_hex}")
    aip = _hex(proc.get("aip"), "processing.aip")
    afl = _hex(proc.get("afl"), "processing.afl")
    if len(aip) != 2:
        raise ConfigError("AIP must be 2 bytes", key="processing.aip")
    oda = str(proc.get("oda", "none"))
    icc_key: emv_keys.RsaKey | None = None
    issuer: emv_keys.IssuerKey | None = None
    if oda != "none":
        try:
            issuer = pki.issuers[keys["issuer"]]
            if oda in ("dda", "cda"):
                icc = pki.iccs[keys["icc"]]
                if icc.issuer is not issuer:
                    raise ConfigError("ICC key certified by another issuer", key="keys.icc")
                icc_key = icc.key
        except KeyError as exc:
            raise ConfigError("profile names a key that is not in the test PKI", missing=str(exc)) from exc
        if not pan.startswith(issuer.issuer_id):
            raise ConfigError("PAN does not start with the issuer identifier", key="keys.issuer")
        cert = emv_keys.issuer_public_key_certificate(issuer)
        data[0x8F] = bytes([issuer.ca.index])
        data[0x90], data[0x92], data[0x9F32] = cert.certificate, cert.remainder, cert.exponent

    layout: dict[tuple[int, int], list[int]] = {}
    for entry in profile.get("record", []):
        layout[(int(entry["sfi"]), int(entry["number"]))] = [int(t, 16) for t in entry["tags"]]

    def build(tags: list[int]) -> bytes:
        body = bytearray()
        for tag in tags:
            if tag not in data:
                raise ConfigError("record names a data object the profile does not provide", tag=f"{tag:X}")
            if data[tag]:                      # an empty remainder (92, 9F48) is left out
                body += encode(tag, data[tag])
        if len(body) > 252:
            raise ConfigError("record too long", length=len(body))
        return encode(0x70, bytes(body))

    placeholder = {key: b"\x70\x00" for key in layout}
    oda_records = _check_afl(afl, placeholder)
    for key in oda_records:
        if _CERT_TAGS & set(layout[key]):
            raise ConfigError("certificates cannot be inside the records they authenticate", sfi=key[0])
    records = {key: build(tags) for key, tags in layout.items() if key in oda_records}
    static = _static_data(afl, records, aip, data.get(0x9F4A))
    if issuer is not None and icc_key is not None:
        serial = _hex(keys.get("icc_cert_serial", "000001"), "keys.icc_cert_serial")
        cert = emv_keys.icc_public_key_certificate(icc_key, issuer.key, pan, expiry[2:4] + expiry[:2], serial,
                                                   static)
        data[0x9F46], data[0x9F47], data[0x9F48] = cert.certificate, cert.exponent, cert.remainder
    elif issuer is not None:
        data[0x93] = emv_keys.signed_static_application_data(
            issuer.key, _hex(keys.get("dac", "DAC0"), "keys.dac"), static)
    records.update({key: build(tags) for key, tags in layout.items() if key not in records})

    cdol1 = parse_dol(data.get(0x8C, b""))
    cdol2 = parse_dol(data.get(0x8D, b""))
    given = dict(cdol1)
    for tag in AC_TERMINAL_TAGS:
        if tag not in given:
            raise ConfigError("CDOL1 lacks a data element the cryptogram needs", tag=f"{tag:X}")
    crypto = CardCrypto(str(proc.get("cryptogram")), _hex(keys.get("imk_ac"), "keys.imk_ac"),
                        _hex(keys.get("imk_smi"), "keys.imk_smi"), _hex(keys.get("imk_smc"), "keys.imk_smc"),
                        pan, psn)

    aid = _hex(app.get("aid"), "application.aid")
    if not 5 <= len(aid) <= 16:
        raise ConfigError("AID must be 5 to 16 bytes", key="application.aid")
    label = str(app.get("label", "")).encode("ascii")
    priority = int(app.get("priority", 1))
    language = str(app.get("language", "en")).encode("ascii")
    pdol_raw = _hex(app.get("pdol", ""), "application.pdol")
    proprietary = encode(0x50, label) + encode(0x87, bytes([priority]))
    if pdol_raw:
        proprietary += encode(0x9F38, pdol_raw)
    proprietary += encode(0x5F2D, language)
    if "preferred_name" in app:
        proprietary += encode(0x9F11, b"\x01") + encode(0x9F12, str(app["preferred_name"]).encode("latin-1"))
    if "fci_discretionary" in app:
        proprietary += encode(0xBF0C, _hex(app["fci_discretionary"], "application.fci_discretionary"))
    fci = encode(0x6F, encode(0x84, aid) + encode(0xA5, proprietary))
    entry = encode(0x4F, aid) + encode(0x50, label) + encode(0x87, bytes([priority]))
    pse_fci = encode(0x6F, encode(0x84, PSE_NAME)
                     + encode(0xA5, encode(0x88, bytes([PSE_SFI])) + encode(0x5F2D, language)))

    formats = {k: int(proc.get(k, 1)) for k in ("gpo_format", "gen_ac_format", "internal_auth_format")}
    if any(v not in (1, 2) for v in formats.values()):
        raise ConfigError("response formats are 1 or 2", key="processing")
    if oda == "cda" and formats["gen_ac_format"] != 2:
        raise ConfigError("CDA needs GENERATE AC response format 2 (Book 3 6.5.5.4)", key="processing")
    limit = int(card.get("pin_try_limit", 3))
    return Personalisation(
        chip=True, atr=atr, aid=aid, pse=bool(app.get("pse", True)), pse_fci=pse_fci,
        pse_records={1: encode(0x70, encode(0x61, entry))}, fci=fci, pdol=parse_dol(pdol_raw), aip=aip,
        afl=afl, records=records, cdol1=cdol1, cdol2=cdol2,
        pin=_digits(card.get("pin"), "card.pin", range(4, 13)),
        pin_try_limit=limit, pin_try_counter=int(card.get("pin_try_counter", limit)),
        atc=int(card.get("atc", 0)), crypto=crypto, icc_key=icc_key, gpo_format=formats["gpo_format"],
        gen_ac_format=formats["gen_ac_format"],
        internal_auth_format=formats["internal_auth_format"], offline_tc=bool(proc.get("offline_tc", False)),
        script_mac=bool(proc.get("script_mac", True)),
        put_data_tags=frozenset(int(t, 16) for t in proc.get("put_data_tags", [])),
        track1=track1, track2=track2, pan=pan, protocol=protocol)
