"""registry.devices: enrollment tokens, serials registered ahead, device status moves, revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from test_keyinject import write_bdk

from contracts.errors import ConfigError
from registry import devices
from registry.db import open_database
from registry.devices import MOVES, STATUSES, MoveRefused, UnknownDevice
from registry.keyinject import KeyInjector
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import Device, EnrollmentToken, ExpectedDevice, Station
from registry.pki import Authority
from registry.seed import apply_seed, load_seed

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
UTC_NOW = NOW.replace(tzinfo=dt.UTC)


@dataclass
class Central:
    """A registry's database, keys and authority in a temporary directory (station ST-001, device T-0001)."""

    path: Path
    engine: Engine
    sessions: sessionmaker[Session]
    keys: RegistryKeys
    authority: Authority
    injector: KeyInjector

    def device(self, device_id: str) -> Device | None:
        with self.sessions() as s:
            return s.get(Device, device_id)


def make_central(tmp_path: Path) -> Iterator[Central]:
    path = tmp_path / "registry.db"
    engine, sessions = open_database(f"sqlite:///{path}")
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    write_bdk(tmp_path / "state")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
    authority = Authority.create(tmp_path / "ca", now=UTC_NOW)
    try:
        yield Central(path, engine, sessions, keys, authority, KeyInjector.load(tmp_path / "state"))
    finally:
        engine.dispose()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    yield from make_central(tmp_path)


def device_csr(key: ec.EllipticCurvePrivateKey, name: str = "SN-1") -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def add_device(central: Central, device_id: str, status: str, *, certified: bool = False) -> None:
    """A device row in a given status; with a certificate issued by the authority and kept."""
    with central.sessions() as s:
        d = Device(id=device_id, station_id="ST-001", status=status, serial=f"SN-{device_id}",
                   pin_key_hex=central.keys.seal_device_key(bytes(16)))
        if certified:
            issued = central.authority.issue(device_csr(ec.generate_private_key(ec.SECP256R1())), device_id,
                                             now=UTC_NOW)
            d.cert_fingerprint, d.cert_pem = issued.fingerprint, issued.cert_pem
        s.add(d)
        s.commit()


def cert_serial(central: Central, device_id: str) -> int:
    device = central.device(device_id)
    pem = device.cert_pem if device is not None else None
    assert pem is not None
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


# -- tokens ---------------------------------------------------------------------------------------------

def test_a_token_is_shown_once_and_stored_as_its_digest(central: Central) -> None:
    with central.sessions() as s:
        token = devices.create_token(s, "ST-001", NOW)
        row = s.scalars(select(EnrollmentToken)).one()
    assert len(token) >= 43 and token not in (row.digest, row.device_id or "")
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert row.expires_at == NOW + dt.timedelta(minutes=15) and row.used_at is None
    assert token.encode() not in b"".join(p.read_bytes() for p in central.path.parent.glob("registry.db*"))


def test_tokens_differ_and_carry_a_requested_id_and_ttl(central: Central) -> None:
    with central.sessions() as s:
        tokens = {devices.create_token(s, "ST-001", NOW) for _ in range(10)}
        devices.create_token(s, "ST-001", NOW, device_id="T-0100", ttl=dt.timedelta(hours=2))
        row = s.scalars(select(EnrollmentToken).where(EnrollmentToken.device_id == "T-0100")).one()
    assert len(tokens) == 10 and row.expires_at == NOW + dt.timedelta(hours=2)


@pytest.mark.parametrize(("station", "device_id", "ttl", "match"), [
    ("ST-404", None, dt.timedelta(minutes=15), "no station"),
    ("ST-001", "T-0100", dt.timedelta(minutes=15), "already exists"),
    ("ST-001", "claim", dt.timedelta(minutes=15), "reserved"),
    ("ST-001", "bad id", dt.timedelta(minutes=15), "device id"),
    ("ST-001", None, dt.timedelta(seconds=5), "lifetime"),
    ("ST-001", None, dt.timedelta(days=30), "lifetime"),
])
def test_bad_token_requests_are_refused(central: Central, station: str, device_id: str | None,
                                        ttl: dt.timedelta, match: str) -> None:
    add_device(central, "T-0100", "active")
    with central.sessions() as s, pytest.raises(ConfigError, match=match):
        devices.create_token(s, station, NOW, device_id=device_id, ttl=ttl)


# -- status moves ---------------------------------------------------------------------------------------

def test_the_move_table() -> None:
    assert set(STATUSES) == {"pending", "active", "revoked", "decommissioned"}
    assert not any(frm == "decommissioned" for frm, _ in MOVES)             # never active again
    assert ("revoked", "active") not in MOVES and ("pending", "revoked") not in MOVES


@pytest.mark.parametrize("frm", STATUSES)
@pytest.mark.parametrize("to", STATUSES)
def test_every_move_follows_the_table(central: Central, frm: str, to: str) -> None:
    add_device(central, "T-0100", frm)
    with central.sessions() as s:
        if (frm, to) in MOVES:
            assert devices.move(s, "T-0100", to).status == to
        else:
            with pytest.raises(MoveRefused, match=f"is {frm}: it cannot become {to}"):
                devices.move(s, "T-0100", to)


def test_accept_makes_a_pending_device_active(central: Central) -> None:
    add_device(central, "T-0100", "pending")
    with central.sessions() as s:
        devices.accept(s, "T-0100")
    assert central.device("T-0100").status == "active"     # type: ignore[union-attr]
    with central.sessions() as s, pytest.raises(MoveRefused):
        devices.accept(s, "T-0100")


def test_an_unknown_device_is_a_typed_error(central: Central) -> None:
    with central.sessions() as s, pytest.raises(UnknownDevice, match="no device 'T-9'"):
        devices.accept(s, "T-9")


def test_revoke_puts_the_certificate_on_the_crl(central: Central) -> None:
    add_device(central, "T-0100", "active", certified=True)
    add_device(central, "T-0101", "active", certified=True)
    with central.sessions() as s:
        devices.revoke(s, central.authority, "T-0100", NOW)
    assert central.device("T-0100").status == "revoked"    # type: ignore[union-attr]
    crl = x509.load_pem_x509_crl(central.authority.crl_path.read_bytes())
    assert [e.serial_number for e in crl] == [cert_serial(central, "T-0100")]
    assert crl.is_signature_valid(x509.load_pem_x509_certificate(central.authority.ca_pem.encode())
                                  .public_key())  # type: ignore[arg-type]
    with central.sessions() as s, pytest.raises(MoveRefused):
        devices.revoke(s, central.authority, "T-0100", NOW)


def test_decommission_revokes_an_active_device_and_is_final(central: Central) -> None:
    add_device(central, "T-0100", "active", certified=True)
    with central.sessions() as s:
        devices.decommission(s, central.authority, "T-0100", NOW)
    assert central.authority.revoked_serials() == [cert_serial(central, "T-0100")]
    for to in ("active", "revoked", "pending"):
        with central.sessions() as s, pytest.raises(MoveRefused):
            devices.move(s, "T-0100", to)


def test_a_revoked_device_is_decommissioned_without_a_second_crl_entry(central: Central) -> None:
    add_device(central, "T-0100", "active", certified=True)
    with central.sessions() as s:
        devices.revoke(s, central.authority, "T-0100", NOW)
        devices.decommission(s, central.authority, "T-0100", NOW)
    assert central.authority.revoked_serials() == [cert_serial(central, "T-0100")]
    assert central.device("T-0100").status == "decommissioned"     # type: ignore[union-attr]


def test_any_registry_host_revokes_from_the_database(central: Central, tmp_path: Path) -> None:
    """The certificate is in the device's row: a host with its own copy of the CA's files revokes it, and
    nothing is written beside the CA but the CRL."""
    add_device(central, "T-0100", "active", certified=True)
    copy = tmp_path / "host-b"
    shutil.copytree(central.authority.directory, copy)
    files = sorted(p.name for p in copy.iterdir())
    host_b = Authority.load(copy)
    with central.sessions() as s:
        devices.revoke(s, host_b, "T-0100", NOW)
    assert host_b.revoked_serials() == [cert_serial(central, "T-0100")]
    assert sorted(p.name for p in copy.iterdir() if p.name != ".crl.lock") == files   # the CRL's lock file


def test_a_certificate_known_only_by_its_fingerprint_is_not_left_valid_silently(
        central: Central, capsys: pytest.CaptureFixture[str]) -> None:
    add_device(central, "T-0100", "active", certified=True)
    with central.sessions() as s:
        device = s.get(Device, "T-0100")
        assert device is not None
        device.cert_pem = None
        s.commit()
    with central.sessions() as s, pytest.raises(devices.DeviceError, match="not in the registry's database"):
        devices.revoke(s, central.authority, "T-0100", NOW)
    code, out, err = run_cli(capsys, "device", "decommission", "T-0100", "--db", f"sqlite:///{central.path}",
                             "--tls-dir", str(central.authority.directory))
    assert (code, out, err.count("\n")) == (1, "", 1) and "cannot be revoked here" in err
    assert central.device("T-0100").status == "active"      # type: ignore[union-attr]
    assert central.authority.revoked_serials() == []


def test_a_refused_move_changes_nothing(central: Central) -> None:
    add_device(central, "T-0100", "pending")
    with central.sessions() as s, pytest.raises(MoveRefused):
        devices.revoke(s, central.authority, "T-0100", NOW)
    assert central.device("T-0100").status == "pending"    # type: ignore[union-attr]
    assert central.authority.revoked_serials() == []


# -- serials registered ahead -------------------------------------------------------------------------

def test_a_seeded_device_awaiting_its_hardware_takes_a_token_or_an_import(central: Central) -> None:
    """T-0001 comes from the seed (no serial, no certificate): a token or an import may name it, at its
    own station only."""
    with central.sessions() as s:
        seeded = s.get(Device, "T-0001")
        assert seeded is not None and devices.awaiting_enrollment(seeded)
        devices.create_token(s, "ST-001", NOW, device_id="T-0001")
        assert devices.import_expected(s, "SN-1,ST-001,T-0001\n", NOW) == 1
        s.add(Station(id="ST-002", name="Other"))
        s.commit()
        with pytest.raises(ConfigError, match="belongs to station ST-001"):
            devices.create_token(s, "ST-002", NOW, device_id="T-0001")
        with pytest.raises(ConfigError, match="already exists"):
            devices.import_expected(s, "SN-1,ST-002,T-0001\n", NOW)


def test_import_expected_serials(central: Central) -> None:
    text = "serial,station,device_id\nSN-1,ST-001,T-0101\nSN-2,ST-001\n\n# spare\nSN-3,ST-001,\n"
    with central.sessions() as s:
        assert devices.import_expected(s, text, NOW) == 3
        rows = {r.serial: r.device_id for r in s.scalars(select(ExpectedDevice)).all()}
    assert rows == {"SN-1": "T-0101", "SN-2": None, "SN-3": None}
    with central.sessions() as s:                   # again: the same rows, the new id
        assert devices.import_expected(s, "SN-1,ST-001,T-0102\n", NOW) == 1
        assert s.get(ExpectedDevice, "SN-1").device_id == "T-0102"     # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "line", "match"), [
    ("SN-1\n", 1, "expected serial,station"),
    ("SN-1,ST-001\nSN-2,ST-001,T-1,extra\n", 2, "expected serial,station"),
    ("SN-1,ST-404\n", 1, "no station"),
    ("serial,station\nSN 1,ST-001\n", 2, "serial number"),
    ("SN-1,ST-001\nSN-1,ST-001\n", 2, "appears twice"),
    ("SN-1,ST-001,T-5\nSN-2,ST-001,T-5\n", 2, "also on line 1"),
    ("SN-1,ST-001,registry\n", 1, "reserved"),
    ("SN-1,ST-001,T-0100\n", 1, "already exists"),
    ("SN-T-0100,ST-001\n", 1, "already enrolled"),
])
def test_a_bad_line_is_named_and_nothing_imported(central: Central, text: str, line: int, match: str) -> None:
    add_device(central, "T-0100", "active")
    with central.sessions() as s, pytest.raises(ConfigError, match=f"line {line}: .*{match}"):
        devices.import_expected(s, text, NOW)
    with central.sessions() as s:
        assert s.scalars(select(ExpectedDevice)).all() == []


# -- what an operator sees ---------------------------------------------------------------------------

def test_list_and_show_give_identity_shadow_and_backlog(central: Central) -> None:
    add_device(central, "T-0100", "active", certified=True)
    with central.sessions() as s:
        d = s.get(Device, "T-0100")
        assert d is not None
        d.desired_config_version, d.reported_config_version, d.backlog = 4, 3, 17
        d.last_seen_at = NOW
        s.commit()
        view = devices.device_view(s, "T-0100")
        listed = [v.id for v in devices.list_devices(s)]
    assert listed == ["T-0001", "T-0100"]
    row = view.fields()
    assert (row["status"], row["config_desired"], row["config_reported"], row["backlog"]) == \
        ("active", "4", "3", "17")
    assert row["cert_fingerprint"] == central.device("T-0100").cert_fingerprint     # type: ignore[union-attr]
    assert row["last_seen_at"] == "2026-12-01 12:00:00Z" and row["software_reported"] == ""
    assert "pin_key" not in " ".join(row) and "kek1:" not in " ".join(row.values())


# -- the command line -----------------------------------------------------------------------------------

RELOAD = "; restart the broker (or SIGHUP it and make the device reconnect) for the CRL to take effect"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from forecourtcli.main import main

    code = main(["registry", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_token_create_prints_the_token_once(central: Central, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{central.path}"
    code, out, err = run_cli(capsys, "token", "create", "--db", db, "--station", "ST-001",
                             "--device-id", "T-0700", "--ttl", "2h")
    assert code == 0 and out.count("\n") == 1
    token = out.strip()
    with central.sessions() as s:
        row = s.get(EnrollmentToken, hashlib.sha256(token.encode()).hexdigest())
    assert row is not None and row.device_id == "T-0700"
    assert row.expires_at - row.created_at == dt.timedelta(hours=2)
    assert token not in err and "shown once" in err
    code, _, err = run_cli(capsys, "token", "create", "--db", db, "--station", "ST-404")
    assert code == 2 and err.count("\n") == 1 and "no station" in err


def test_cli_import_list_show(central: Central, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = f"sqlite:///{central.path}"
    csv_file = tmp_path / "serials.csv"
    csv_file.write_text("serial,station,device_id\nSN-1,ST-001,T-0101\n")
    assert run_cli(capsys, "device", "import", str(csv_file), "--db", db)[:2] == \
        (0, "1 serial numbers registered: their devices are accepted when they enroll\n")
    csv_file.write_text("SN-2,ST-009\n")
    code, _, err = run_cli(capsys, "device", "import", str(csv_file), "--db", db)
    assert code == 2 and "line 1: no station 'ST-009'" in err and "Traceback" not in err
    add_device(central, "T-0100", "pending")
    code, out, _ = run_cli(capsys, "device", "list", "--db", db)
    assert code == 0 and out.splitlines()[0].split()[:4] == ["ID", "STATION", "SERIAL", "STATUS"]
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [
        ["T-0001", "ST-001", "-", "active"], ["T-0100", "ST-001", "SN-T-0100", "pending"]]
    code, out, _ = run_cli(capsys, "device", "list", "--db", db, "--csv")
    assert code == 0 and out.splitlines()[0].startswith("id,station,serial,status,cert_fingerprint")
    code, out, _ = run_cli(capsys, "device", "show", "T-0100", "--db", db)
    assert code == 0 and "status             pending" in out and "backlog_oldest_s   0" in out
    code, _, err = run_cli(capsys, "device", "show", "T-9", "--db", db)
    assert (code, err) == (2, "forecourt: no device 'T-9' (key=ID)\n")


def test_cli_accept_revoke_decommission(central: Central, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{central.path}"
    tls = str(central.authority.directory)
    add_device(central, "T-0100", "pending")
    add_device(central, "T-0101", "active", certified=True)
    assert run_cli(capsys, "device", "accept", "T-0100", "--db", db)[:2] == \
        (0, "T-0100: active; the registry sends its certificate and keys\n")
    code, _, err = run_cli(capsys, "device", "accept", "T-0100", "--db", db)
    assert code == 1 and "is active: it cannot become active" in err and err.count("\n") == 1
    assert run_cli(capsys, "device", "revoke", "T-0101", "--db", db, "--tls-dir", tls)[:2] == \
        (0, f"T-0101: revoked; its certificate is on the CRL (crl.pem){RELOAD}\n")
    assert central.authority.revoked_serials() == [cert_serial(central, "T-0101")]
    assert run_cli(capsys, "device", "decommission", "T-0101", "--db", db, "--tls-dir", tls)[:2] == \
        (0, f"T-0101: decommissioned; retired for good{RELOAD}\n")
    elsewhere = str(central.path.parent)
    code, _, err = run_cli(capsys, "device", "revoke", "T-0100", "--db", db, "--tls-dir", elsewhere)
    assert code == 2 and "authority file not found" in err


def test_cli_says_when_a_device_had_no_certificate_to_revoke(central: Central,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """T-0001 comes from the seed: active, but never issued a certificate by this registry."""
    assert run_cli(capsys, "device", "revoke", "T-0001", "--db", f"sqlite:///{central.path}", "--tls-dir",
                   str(central.authority.directory))[:2] == \
        (0, "T-0001: revoked; it has no certificate on record: nothing was put on the CRL\n")
    assert central.authority.revoked_serials() == []
