"""registry.pki: the fleet CA, its service certificates, device certificates from CSRs, and the CRL."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contracts.errors import ConfigError
from registry.pki import CRL_DAYS, CRL_RENEW, Authority, CertificateRefused, fingerprint

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEYS = ("ca.key", "broker.key", "registry.key", "claim.key")
CERTS = ("ca.pem", "broker.pem", "registry.pem", "claim.pem", "crl.pem")


def csr_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str = "T-0001") -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "pki", now=NOW)


def test_create_writes_every_file_keys_private(ca: Authority) -> None:
    for name in KEYS:
        assert os.stat(ca.directory / name).st_mode & 0o777 == 0o600, name
    for name in CERTS:
        assert (ca.directory / name).read_text().startswith("-----BEGIN"), name
    loaded = Authority.load(ca.directory)
    assert loaded.ca_pem == ca.ca_pem
    root = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    assert root.not_valid_after_utc - NOW >= timedelta(days=3650)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_service_certificates(ca: Authority) -> None:
    root = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    for name in ("broker", "registry", "claim"):
        cert = x509.load_pem_x509_certificate((ca.directory / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(root)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        key = serialization.load_pem_private_key((ca.directory / f"{name}.key").read_bytes(), None)
        assert key.public_key() == cert.public_key()
    broker = x509.load_pem_x509_certificate((ca.directory / "broker.pem").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = broker.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_broker_hosts_are_the_san(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path, broker_hosts=("broker.example", "10.0.0.7"), now=NOW)
    broker = x509.load_pem_x509_certificate((ca.directory / "broker.pem").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]


def test_a_second_authority_in_the_same_directory_is_refused(ca: Authority) -> None:
    before = ca.ca_pem
    with pytest.raises(ConfigError, match="already exists"):
        Authority.create(ca.directory, now=NOW)
    assert Authority.load(ca.directory).ca_pem == before


def test_issue_a_device_certificate_from_its_csr(ca: Authority) -> None:
    key = p256()
    issued = ca.issue(csr_for(key, "whatever-the-csr-says"), "T-0001", days=30, now=NOW)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_pem.encode()))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T-0001"
    assert cert.public_key() == key.public_key()
    assert issued.not_after == NOW + timedelta(days=30) == cert.not_valid_after_utc
    assert issued.fingerprint == fingerprint(issued.cert_pem)
    assert issued.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_csr_whose_signature_fails_is_refused(ca: Authority) -> None:
    der = bytearray(x509.load_pem_x509_csr(csr_for(p256()).encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01                      # the last byte of the ECDSA signature's s
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CertificateRefused, match="signature"):
        ca.issue(pem, "T-0001", now=NOW)


@pytest.mark.parametrize("cn", ["registry", "claim", "broker", "", "T 1", "x" * 65, "T/1", "+", "#"])
def test_reserved_or_malformed_names_are_refused(ca: Authority, cn: str) -> None:
    with pytest.raises(CertificateRefused, match="device id"):
        ca.issue(csr_for(p256()), cn, now=NOW)


@pytest.mark.parametrize("key", [rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                 ec.generate_private_key(ec.SECP384R1())], ids=["rsa", "p384"])
def test_keys_other_than_p256_are_refused(ca: Authority, key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CertificateRefused, match="P-256"):
        ca.issue(csr_for(key), "T-0001", now=NOW)


@pytest.mark.parametrize("text", ["", "hello", ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                  "-----END CERTIFICATE REQUEST-----\n"), "\u00e9"])
def test_garbage_is_not_a_csr(ca: Authority, text: str) -> None:
    with pytest.raises(CertificateRefused):
        ca.issue(text, "T-0001", now=NOW)


def test_revoke_lists_the_serial_in_a_signed_crl(ca: Authority) -> None:
    a = ca.issue(csr_for(p256()), "T-0001", now=NOW)
    b = ca.issue(csr_for(p256()), "T-0002", now=NOW)
    ca.revoke(a.cert_pem, now=NOW)
    ca.revoke(a.cert_pem, now=NOW)                      # twice: listed once
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(x509.load_pem_x509_certificate(ca.ca_pem.encode()).public_key())
    serial_a = x509.load_pem_x509_certificate(a.cert_pem.encode()).serial_number
    serial_b = x509.load_pem_x509_certificate(b.cert_pem.encode()).serial_number
    assert [r.serial_number for r in crl] == [serial_a]
    assert crl.get_revoked_certificate_by_serial_number(serial_b) is None
    assert crl.next_update_utc == NOW + timedelta(days=CRL_DAYS)
    assert Authority.load(ca.directory).revoked_serials() == [serial_a]
    assert os.stat(ca.crl_path).st_mode & 0o777 == 0o644      # the broker reads it


def test_refresh_crl_keeps_entries_and_moves_next_update(ca: Authority) -> None:
    a = ca.issue(csr_for(p256()), "T-0001", now=NOW)
    ca.revoke(a.cert_pem, now=NOW)
    later = NOW + timedelta(days=300)
    ca.refresh_crl(now=later)
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert len(list(crl)) == 1 and crl.next_update_utc == later + timedelta(days=CRL_DAYS)


def test_a_certificate_from_another_ca_cannot_be_revoked(ca: Authority, tmp_path: Path) -> None:
    other = Authority.create(tmp_path / "other", now=NOW)
    foreign = other.issue(csr_for(p256()), "T-0001", now=NOW)
    with pytest.raises(CertificateRefused, match="not issued by this authority"):
        ca.revoke(foreign.cert_pem, now=NOW)
    assert ca.revoked_serials() == []


def test_a_readable_ca_key_is_refused(ca: Authority) -> None:
    os.chmod(ca.directory / "ca.key", 0o640)
    with pytest.raises(ConfigError, match="0600"):
        Authority.load(ca.directory)


def test_a_ca_key_that_is_not_the_certificates_is_refused(ca: Authority, tmp_path: Path) -> None:
    other = Authority.create(tmp_path / "other", now=NOW)
    shutil.copy(other.directory / "ca.pem", ca.directory / "ca.pem")
    with pytest.raises(ConfigError, match="not the key"):
        Authority.load(ca.directory)


def test_a_device_certificate_never_outlives_the_ca(ca: Authority) -> None:
    late = NOW + timedelta(days=3600)
    issued = ca.issue(csr_for(p256()), "T-0001", days=365, now=late)
    root = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    assert issued.not_after == root.not_valid_after_utc


def test_openssl_verifies_issued_and_refuses_revoked(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca = Authority.create(tmp_path / "pki")              # the real clock: openssl checks validity now
    good, bad = (ca.issue(csr_for(p256()), f"T-000{i}") for i in (1, 2))
    ca.revoke(bad.cert_pem)
    for name, issued in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.pem").write_text(issued.cert_pem)

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([openssl, "verify", "-CAfile", str(ca.directory / "ca.pem"), "-crl_check",
                               "-CRLfile", str(ca.crl_path), "-purpose", "sslclient",
                               str(tmp_path / f"{name}.pem")], capture_output=True, text=True, check=False)

    assert verify("good").returncode == 0, verify("good").stdout + verify("good").stderr
    revoked = verify("bad")
    assert revoked.returncode != 0 and "revoked" in (revoked.stdout + revoked.stderr)


def test_cli_pki_init_and_crl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import EXIT_OK, EXIT_USAGE, main

    pki = tmp_path / "pki"
    assert main(["registry", "pki", "init", "--dir", str(pki), "--broker-host", "broker.example",
                 "--broker-host", "10.1.2.3"]) == EXIT_OK
    broker = x509.load_pem_x509_certificate((pki / "broker.pem").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]
    ca_before = (pki / "ca.pem").read_text()
    assert main(["registry", "pki", "init", "--dir", str(pki)]) == EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    assert (pki / "ca.pem").read_text() == ca_before
    bad = ["registry", "pki", "init", "--dir", str(tmp_path / "x"), "--broker-host", "a b"]
    assert main(bad) == EXIT_USAGE
    assert not (tmp_path / "x").exists()
    assert main(["registry", "pki", "crl", "--dir", str(pki)]) == EXIT_OK
    assert "0 revoked" in capsys.readouterr().out


def test_rewriting_the_crl_keeps_each_entrys_revocation_date(ca: Authority) -> None:
    """RFC 5280 5.1.2.6: revocationDate is when the certificate was revoked, not when the list was signed."""
    a = ca.issue(csr_for(p256()), "T-0001", now=NOW)
    b = ca.issue(csr_for(p256()), "T-0002", now=NOW)
    ca.revoke(a.cert_pem, now=NOW)
    ca.revoke(b.cert_pem, now=NOW + timedelta(days=1))
    ca.refresh_crl(now=NOW + timedelta(days=300))
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    dates = {r.serial_number: r.revocation_date_utc for r in crl}
    serial = {c: x509.load_pem_x509_certificate(c.cert_pem.encode()).serial_number for c in (a, b)}
    assert dates == {serial[a]: NOW, serial[b]: NOW + timedelta(days=1)}


_REVOKE = """
import sys
from pathlib import Path
from registry.pki import Authority
authority = Authority.load(Path(sys.argv[1]))
print("ready", flush=True)
authority.revoke(Path(sys.argv[2]).read_text())
print("done", flush=True)
"""


def test_a_revocation_by_another_process_meanwhile_is_not_lost(ca: Authority, tmp_path: Path) -> None:
    """`registry device revoke` (its own process) revokes T-0001 while the registry is between reading and
    writing crl.pem for T-0002: both stay listed (the CLI waits for the registry's lock)."""
    first = ca.issue(csr_for(p256()), "T-0001", now=NOW)
    second = ca.issue(csr_for(p256()), "T-0002", now=NOW)
    (tmp_path / "first.pem").write_text(first.cert_pem)
    registry = Authority.load(ca.directory)
    write = registry._write_crl
    cli: list[subprocess.Popen[str]] = []

    def slow_write(*args: object) -> None:
        argv = [sys.executable, "-c", _REVOKE, str(ca.directory), str(tmp_path / "first.pem")]
        proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                                text=True)
        cli.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)             # the CLI would finish here, were it not waiting for the lock
        write(*args)                          # type: ignore[arg-type]

    registry._write_crl = slow_write          # type: ignore[method-assign, assignment]
    registry.revoke(second.cert_pem, now=NOW)
    assert cli[0].wait(timeout=60) == 0 and cli[0].stdout is not None
    assert cli[0].stdout.read().strip() == "done"
    cli[0].stdout.close()
    serials = {x509.load_pem_x509_certificate(c.cert_pem.encode()).serial_number for c in (first, second)}
    assert set(ca.revoked_serials()) == serials


def test_the_crl_is_renewed_once_its_next_update_is_near(ca: Authority) -> None:
    a = ca.issue(csr_for(p256()), "T-0001", now=NOW)
    ca.revoke(a.cert_pem, now=NOW)
    early = NOW + timedelta(days=CRL_DAYS) - CRL_RENEW - timedelta(days=1)
    assert not ca.renew_crl_if_due(now=early)
    due = early + timedelta(days=2)
    assert ca.renew_crl_if_due(now=due)
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.next_update_utc == due + timedelta(days=CRL_DAYS)
    assert [(r.serial_number, r.revocation_date_utc) for r in crl] == [
        (x509.load_pem_x509_certificate(a.cert_pem.encode()).serial_number, NOW)]
    assert not ca.renew_crl_if_due(now=due)
