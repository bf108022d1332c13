"""contracts.usbbundle: sales bundles (encrypted to the registry, signed by the device) and configuration
bundles, as files; every hostile change is refused with a typed error."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from contracts import messages as m
from contracts.signing import key_id
from contracts.usbbundle import (
    UsbBundleError,
    decode_config_bundle,
    decode_receipt,
    decode_sales_bundle,
    encode_config_bundle,
    encode_receipt,
    encode_sales_bundle,
    open_sales,
    recipient_id,
    verify_sales_signature,
)
from registry.pki import Authority

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CREATED = "2026-06-01T12:00:00Z"


@dataclass
class Kit:
    """A CA, one device (key and certificate) and a registry bundle key."""

    ca: Authority
    terminal: str
    device_key: ec.EllipticCurvePrivateKey
    cert_pem: str
    registry_key: ec.EllipticCurvePrivateKey

    def device(self, terminal: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, terminal)]))
               .sign(key, hashes.SHA256()))
        issued = self.ca.issue(csr.public_bytes(serialization.Encoding.PEM).decode(), terminal, now=NOW)
        return key, issued.cert_pem


def make_kit(directory: Path, terminal: str = "T-0001") -> Kit:
    ca = Authority.create(directory, now=NOW)
    new = ec.generate_private_key
    kit = Kit(ca, terminal, new(ec.SECP256R1()), "", new(ec.SECP256R1()))
    kit.device_key, kit.cert_pem = kit.device(terminal)
    return kit


def sale(terminal: str = "T-0001", **over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "sale_id": str(uuid.uuid4()), "kind": "bank", "auth_id": None, "terminal": terminal,
        "station": "ST-001", "pump": 1, "nozzle": 1, "product": "DIESEL", "volume_cl": 1000,
        "amount_cents": 1599, "price_milli": 1599, "card_masked": "476173******0010",
        "finished_at": "2026-06-01T11:00:00.000000Z", "recovered": False, "flags": []}
    doc.update(over)
    return doc


def bundle(kit: Kit, sales: list[dict[str, object]], **over: object) -> bytes:
    args: dict[str, object] = {"terminal": kit.terminal, "created_at": CREATED,
                               "certificate_pem": kit.cert_pem, "device_key": kit.device_key,
                               "registry_key": kit.registry_key.public_key()}
    args.update(over)
    return encode_sales_bundle([m.encode(s, m.SALE) for s in sales], **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return make_kit(tmp_path_factory.mktemp("pki"))


def test_round_trip(kit: Kit) -> None:
    sales = [sale() for _ in range(3)]
    raw = bundle(kit, sales)
    parsed = decode_sales_bundle(raw)
    assert (parsed.terminal, parsed.count, parsed.recipient) == (
        "T-0001", 3, recipient_id(kit.registry_key.public_key()))
    verify_sales_signature(parsed, kit.device_key.public_key())
    assert open_sales(parsed, kit.registry_key) == sales


def test_payload_is_not_readable_without_the_registry_key(kit: Kit) -> None:
    s = sale(card_masked="476173******0010")
    raw = bundle(kit, [s])
    assert s["sale_id"].encode() not in raw and b"476173" not in raw   # type: ignore[union-attr]


def test_many_sales_fit(kit: Kit) -> None:
    """The sealed box takes 4 KB at most; the data key envelope carries any number of sales."""
    sales = [sale() for _ in range(2000)]
    parsed = decode_sales_bundle(bundle(kit, sales))
    assert len(open_sales(parsed, kit.registry_key)) == 2000


def test_an_empty_bundle(kit: Kit) -> None:
    assert open_sales(decode_sales_bundle(bundle(kit, [])), kit.registry_key) == []


@pytest.mark.parametrize("cut", [0, 1, 40, -200, -2])
def test_truncated_file_is_malformed(kit: Kit, cut: int) -> None:
    raw = bundle(kit, [sale()])
    with pytest.raises(UsbBundleError) as err:
        decode_sales_bundle(raw[:cut])
    assert err.value.reason == "malformed"


@pytest.mark.parametrize(("field", "value"), [
    ("terminal", "T-0002"), ("count", 2), ("created_at", "2026-06-02T12:00:00Z"),
    ("bundle_id", "0f8fad5b-d9cb-469f-a165-70867728950e")])
def test_a_changed_header_field_breaks_the_signature(kit: Kit, field: str, value: object) -> None:
    doc = json.loads(bundle(kit, [sale()]))
    doc[field] = value
    parsed = decode_sales_bundle(json.dumps(doc).encode())
    with pytest.raises(UsbBundleError) as err:
        verify_sales_signature(parsed, kit.device_key.public_key())
    assert err.value.reason == "bad_signature"
    with pytest.raises(UsbBundleError) as err:      # nor does the payload open under the changed header
        open_sales(parsed, kit.registry_key)
    assert err.value.reason == "does_not_open"


def test_a_flipped_ciphertext_byte(kit: Kit) -> None:
    doc = json.loads(bundle(kit, [sale()]))
    body = bytearray(base64.b64decode(doc["payload"]))
    body[20] ^= 1
    doc["payload"] = base64.b64encode(bytes(body)).decode()
    parsed = decode_sales_bundle(json.dumps(doc).encode())
    with pytest.raises(UsbBundleError, match="signature"):
        verify_sales_signature(parsed, kit.device_key.public_key())
    with pytest.raises(UsbBundleError, match="does not open"):
        open_sales(parsed, kit.registry_key)


def test_signed_by_another_key(kit: Kit) -> None:
    raw = bundle(kit, [sale()], device_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(UsbBundleError) as err:
        verify_sales_signature(decode_sales_bundle(raw), kit.device_key.public_key())
    assert err.value.reason == "bad_signature"


def test_for_another_registry(kit: Kit) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    parsed = decode_sales_bundle(bundle(kit, [sale()], registry_key=other.public_key()))
    with pytest.raises(UsbBundleError) as err:
        open_sales(parsed, kit.registry_key)
    assert err.value.reason == "wrong_registry"


def test_recipient_changed_to_this_registry_still_does_not_open(kit: Kit) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    doc = json.loads(bundle(kit, [sale()], registry_key=other.public_key()))
    doc["recipient"] = recipient_id(kit.registry_key.public_key())
    with pytest.raises(UsbBundleError) as err:
        open_sales(decode_sales_bundle(json.dumps(doc).encode()), kit.registry_key)
    assert err.value.reason == "does_not_open"


def test_a_sale_of_another_terminal_inside(kit: Kit) -> None:
    parsed = decode_sales_bundle(bundle(kit, [sale(), sale("T-0002")]))
    with pytest.raises(UsbBundleError) as err:
        open_sales(parsed, kit.registry_key)
    assert err.value.reason == "wrong_terminal"


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"null", b"{}", b'{"format": "forecourt-usb-sales"}',
    b'{"format": "forecourt-usb-sales", "v": 2}',
    b'{"format": "other", "v": 1}', b"[" * 5000, b"\xff\xfe"])
def test_garbage_is_refused_typed(raw: bytes) -> None:
    with pytest.raises(UsbBundleError):
        decode_sales_bundle(raw)


def test_unknown_and_missing_fields(kit: Kit) -> None:
    doc = json.loads(bundle(kit, [sale()]))
    with pytest.raises(UsbBundleError, match="fields"):
        decode_sales_bundle(json.dumps({**doc, "extra": 1}).encode())
    del doc["certificate_pem"]
    with pytest.raises(UsbBundleError, match="fields"):
        decode_sales_bundle(json.dumps(doc).encode())


def test_an_error_names_no_sale_content(kit: Kit) -> None:
    s = sale(card_masked="476173******0010")
    parsed = decode_sales_bundle(bundle(kit, [s]))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(UsbBundleError) as err:
        open_sales(parsed, other)
    assert "476173" not in str(err.value) and str(s["sale_id"]) not in str(err.value)


CONFIG = {"terminal": "T-0001", "version": 3, "issued_at": CREATED, "expires_at": "2026-07-01T12:00:00Z",
          "key_id": "0123456789abcdef", "body": {"station": "ST-001"}, "sig": "AAAA"}


def test_config_bundle_round_trip() -> None:
    raw = encode_config_bundle(CONFIG, created_at=CREATED)
    parsed = decode_config_bundle(raw)
    assert (parsed.terminal, parsed.config) == ("T-0001", CONFIG)


def test_config_bundle_refuses_garbage() -> None:
    raw = encode_config_bundle(CONFIG, created_at=CREATED)
    doc = json.loads(raw)
    for bad in ({**doc, "terminal": "T-0002"}, {**doc, "config": {**CONFIG, "version": 0}},
                {**doc, "config": "x"}, {**doc, "format": "forecourt-usb-sales"}):
        with pytest.raises(UsbBundleError):
            decode_config_bundle(json.dumps(bad).encode())
    with pytest.raises(UsbBundleError):
        decode_config_bundle(raw[:-30])


SIGNER = Ed25519PrivateKey.generate()
TRUSTED = {key_id(SIGNER.public_key()): SIGNER.public_key()}
ACKS = [{"sale_id": str(uuid.uuid4()), "status": "stored", "reason": ""},
        {"sale_id": str(uuid.uuid4()), "status": "duplicate", "reason": "held"}]


def signed_receipt(acks: list[dict[str, str]] = ACKS, terminal: str = "T-0001") -> bytes:
    return encode_receipt(acks, bundle_id=str(uuid.uuid4()), terminal=terminal, created_at=CREATED,
                          key_id=key_id(SIGNER.public_key()), private_key=SIGNER)


def test_receipt_round_trip() -> None:
    assert decode_receipt(signed_receipt(), TRUSTED, terminal="T-0001").acks == ACKS


@pytest.mark.parametrize(("raw", "reason"), [
    (signed_receipt()[:-20], "malformed"),
    (signed_receipt().replace(b'"stored"', b'"rejected"'), "bad_signature"),
    (signed_receipt(terminal="T-0002"), "wrong_terminal"),
    (json.dumps({**json.loads(signed_receipt()), "key_id": "0000000000000000"}).encode(), "unknown_key"),
])
def test_receipt_refusals(raw: bytes, reason: str) -> None:
    with pytest.raises(UsbBundleError) as err:
        decode_receipt(raw, TRUSTED, terminal="T-0001")
    assert err.value.reason == reason


def test_receipt_acks_must_be_sale_acks() -> None:
    with pytest.raises(UsbBundleError):
        signed_receipt([{"sale_id": "x", "status": "stored", "reason": ""}])
    with pytest.raises(UsbBundleError):
        signed_receipt([{**ACKS[0], "extra": 1}])  # type: ignore[dict-item]


def test_a_malformed_sale_inside_is_refused_typed(kit: Kit) -> None:
    raw = encode_sales_bundle([b'{"v":1,"sale_id":"4111111111111111"}'], terminal=kit.terminal,
                              created_at=CREATED, certificate_pem=kit.cert_pem, device_key=kit.device_key,
                              registry_key=kit.registry_key.public_key())
    with pytest.raises(UsbBundleError) as err:
        open_sales(decode_sales_bundle(raw), kit.registry_key)
    assert err.value.reason == "malformed" and "4111" not in str(err.value)
