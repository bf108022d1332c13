"""The offline exchange end to end, without a broker: the terminal's journal -> a sales bundle file ->
the registry (real SQLite, the simulator's seed), and a configuration bundle -> the terminal's store."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from contracts.signing import key_id, trusted_from_b64
from contracts.usbbundle import UsbBundleError, decode_config_bundle, encode_receipt, registry_key_from_b64
from firmware.configstore import ConfigStore, write_config_keys
from firmware.hostlink import RELEASE
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState as S
from firmware.sale.record import Preset
from firmware.usbexport import export_sales, load_identity, registry_key
from firmware.usbimport import ConfigImport, ReceiptImport, import_config, import_receipt
from registry.configs import ConfigIssuer, load_or_create_signing_key
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import Device, Nozzle, Transaction
from registry.pki import Authority, fingerprint
from registry.seed import apply_seed, load_seed
from registry.usbimport import (
    BUNDLE_KEY,
    ImportResult,
    bundle_public_key,
    export_config,
    import_sales,
    load_or_create_bundle_key,
    receipt,
)
from tests.test_usbbundle import NOW, Kit, make_kit

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
AT = NOW.replace(tzinfo=None)          # the registry's clock: naive UTC


@dataclass
class World:
    kit: Kit
    sessions: sessionmaker[Session]
    journal: Journal
    state: Path
    bundle_key: ec.EllipticCurvePrivateKey

    def mine(self) -> list[str]:
        """Ids of the sales stored by this test (the seed brings some of its own)."""
        with self.sessions() as s:
            return sorted(s.scalars(select(Transaction.sale_id).where(Transaction.kind == "bank")).all())

    def stored(self) -> int:
        return len(self.mine())

    def export(self, **over: object) -> bytes:
        args: dict[str, object] = {
            "terminal": "T-0001", "station": "ST-001", "device_key": self.kit.device_key,
            "certificate_pem": self.kit.cert_pem, "registry": self.bundle_key.public_key(), "now": AT}
        args.update(over)
        return export_sales(self.journal, **args).data  # type: ignore[arg-type]

    def imported(self, raw: bytes, **over: object) -> ImportResult:
        args: dict[str, object] = {"bundle_key": self.bundle_key, "ca_pem": self.kit.ca.ca_pem, "now": AT}
        args.update(over)
        with self.sessions() as s:
            return import_sales(s, raw, **args)  # type: ignore[arg-type]

    def import_(self, raw: bytes, **over: object) -> str:
        return self.imported(raw, **over).summary()


def bank_sale(j: Journal, *, volume_cl: int = 2000) -> str:
    sale_id = str(uuid.uuid4())
    j.begin_sale(sale_id, 1, "476173******0010", "b" * 32, program="bank")
    j.transition(sale_id, S.AUTHORIZING)
    j.transition(sale_id, S.APPROVED, preset=Preset.amount(12000), nozzles=[1])
    j.transition(sale_id, S.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
    j.transition(sale_id, S.COMPLETED, nozzle=1, product="diesel", volume_cl=volume_cl,
                 amount_cents=(volume_cl * 1659 + 500) // 1000, charged_cents=0, price_milli=1659,
                 finished_at=(NOW - dt.timedelta(hours=1)).timestamp(), flags=[], recovered=False)
    return sale_id


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    kit = make_kit(tmp_path / "pki")
    _, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "registry" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), AT)
        device = s.get(Device, "T-0001")
        assert device is not None
        device.cert_fingerprint = fingerprint(kit.cert_pem)
        s.commit()
    journal = Journal(tmp_path / "terminal" / "journal.db")
    try:
        yield World(kit, sessions, journal, tmp_path, load_or_create_bundle_key(tmp_path / "registry"))
    finally:
        journal.close()


def test_sales_exported_imported_twice_stored_once(world: World) -> None:
    ids = [bank_sale(world.journal) for _ in range(5)]
    raw = world.export()
    assert world.import_(raw).endswith(
        "5 sales, 5 new (stored 5, held 0, already stored 0, rejected 0, failed 0)")
    assert world.stored() == 5
    again = world.import_(raw)
    assert "nothing new" in again and "already stored 5" in again
    assert world.stored() == 5
    assert world.mine() == sorted(ids)


def test_an_export_marks_nothing_synced(world: World) -> None:
    for _ in range(3):
        bank_sale(world.journal)
    world.import_(world.export())
    assert len(world.journal.unsynced()) == 3          # only the registry's ack marks a sale synced
    bank_sale(world.journal)
    second = world.import_(world.export())             # carries all four again; one is new
    assert "4 sales, 1 new" in second and "already stored 3" in second
    assert world.stored() == 4


def test_synced_and_parked_sales_are_not_exported(world: World) -> None:
    a, b, _ = (bank_sale(world.journal) for _ in range(3))
    world.journal.mark(a, "synced")
    world.journal.park(b, "conflict")
    assert "1 sales, 1 new" in world.import_(world.export())


def test_bundle_key_is_private_and_kept(world: World) -> None:
    path = world.state / "registry" / BUNDLE_KEY
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_bundle_key(world.state / "registry").private_numbers() == \
        world.bundle_key.private_numbers()
    public = registry_key_from_b64(bundle_public_key(world.state / "registry"))
    assert public == world.bundle_key.public_key()
    assert registry_key({"registry_bundle_key": bundle_public_key(world.state / "registry")}) == public
    with pytest.raises(ConfigError, match="import a configuration"):
        registry_key({"registry_bundle_key": ""})


def refused(world: World, raw: bytes, reason: str, **over: object) -> None:
    before = world.stored()
    with pytest.raises(UsbBundleError) as err:
        world.import_(raw, **over)
    assert err.value.reason == reason
    assert world.stored() == before


def test_truncated_and_tampered_files_are_refused(world: World) -> None:
    bank_sale(world.journal)
    raw = world.export()
    refused(world, raw[: len(raw) // 2], "malformed")
    doc = json.loads(raw)
    doc["count"] = 2
    refused(world, json.dumps(doc).encode(), "bad_signature")
    doc = json.loads(raw)
    doc["payload"] = doc["payload"][:40] + ("A" if doc["payload"][40] != "A" else "B") + doc["payload"][41:]
    refused(world, json.dumps(doc).encode(), "bad_signature")


def test_a_bundle_for_another_registry_is_refused(world: World) -> None:
    bank_sale(world.journal)
    other = ec.generate_private_key(ec.SECP256R1())
    refused(world, world.export(registry=other.public_key()), "wrong_registry")
    # the same file carried to the other registry opens there; replayed here it does not
    refused(world, world.export(), "wrong_registry", bundle_key=other)


def test_a_certificate_of_another_ca_is_refused(world: World) -> None:
    bank_sale(world.journal)
    rogue = make_kit(world.state / "rogue-pki")
    refused(world, world.export(device_key=rogue.device_key, certificate_pem=rogue.cert_pem),
            "untrusted_certificate")


def test_another_devices_certificate_is_refused(world: World) -> None:
    bank_sale(world.journal)
    key, cert = world.kit.device("T-0002")
    refused(world, world.export(device_key=key, certificate_pem=cert), "wrong_device")


def test_a_certificate_that_is_not_the_devices_current_one_is_refused(world: World) -> None:
    bank_sale(world.journal)
    key, cert = world.kit.device("T-0001")        # a valid certificate of our CA, but not the one on record
    refused(world, world.export(device_key=key, certificate_pem=cert), "wrong_certificate")


def test_signed_with_a_key_that_is_not_the_certificates(world: World) -> None:
    bank_sale(world.journal)
    refused(world, world.export(device_key=ec.generate_private_key(ec.SECP256R1())), "bad_signature")


@pytest.mark.parametrize("status", ["revoked", "decommissioned", "pending"])
def test_an_inactive_device_is_refused(world: World, status: str) -> None:
    bank_sale(world.journal)
    raw = world.export()
    with world.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        device.status = status
        s.commit()
    refused(world, raw, "device_not_active")


def test_an_unknown_device_is_refused(world: World) -> None:
    key, cert = world.kit.device("T-0099")
    refused(world, world.export(terminal="T-0099", device_key=key, certificate_pem=cert), "unknown_device")


def test_a_bundle_dated_ahead_or_after_the_certificate(world: World) -> None:
    bank_sale(world.journal)
    refused(world, world.export(now=AT + dt.timedelta(hours=1)), "from_the_future")
    refused(world, world.export(now=AT + dt.timedelta(days=400)), "certificate_expired",
            now=AT + dt.timedelta(days=400))


def test_identity_files(world: World, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key_path, cert_path = tmp_path / "device.key", tmp_path / "device.pem"
    pem = world.kit.device_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
    key_path.write_bytes(pem)
    cert_path.write_text(world.kit.cert_pem)
    key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="other users"):
        load_identity(key_path, cert_path)
    key_path.chmod(0o600)
    key, cert = load_identity(key_path, cert_path)
    assert key.private_numbers() == world.kit.device_key.private_numbers() and cert == world.kit.cert_pem
    with pytest.raises(ConfigError, match="provision"):
        load_identity(key_path, tmp_path / "missing.pem")


def test_the_ca_of_the_world_is_the_one_checked(world: World) -> None:
    assert Authority.load(world.kit.ca.directory).ca_pem == world.kit.ca.ca_pem


# -- a configuration from the registry onto a terminal -------------------------------------------------------

@pytest.fixture
def issuer(world: World) -> ConfigIssuer:
    return ConfigIssuer(world.state / "registry")


def store_of(world: World, issuer: ConfigIssuer) -> ConfigStore:
    state = world.state / "terminal"
    write_config_keys(state, issuer.config_keys())
    return ConfigStore(state, terminal="T-0001", now=AT)


def exported(world: World, issuer: ConfigIssuer, device: str = "T-0001") -> bytes:
    with world.sessions() as s:
        return export_config(s, device, issuer=issuer, now=AT)


def test_config_bundle_installed_once(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    raw = exported(world, issuer)
    assert import_config(store, raw, terminal="T-0001", now=AT) == ConfigImport("installed", 1)
    on_disk = (world.state / "terminal" / "config.signed.json").read_bytes()
    assert import_config(store, raw, terminal="T-0001", now=AT) == ConfigImport("unchanged", 1)
    assert (world.state / "terminal" / "config.signed.json").read_bytes() == on_disk
    assert not store.refusals
    # a terminal restarted in between: the same file changes nothing either
    again = ConfigStore(world.state / "terminal", terminal="T-0001", now=AT)
    assert import_config(again, raw, terminal="T-0001", now=AT) == ConfigImport("unchanged", 1)
    assert again.current is not None and again.current["station"] == "ST-001"


def test_config_export_is_the_registrys_current_release(world: World, issuer: ConfigIssuer) -> None:
    first = decode_config_bundle(exported(world, issuer)).config
    assert decode_config_bundle(exported(world, issuer)).config == first     # nothing changed: same release
    with world.sessions() as s:
        s.execute(update(Nozzle).where(Nozzle.pump == 1, Nozzle.nozzle == 1).values(price_milli=1699))
        s.commit()
    newer = exported(world, issuer)
    assert decode_config_bundle(newer).config["version"] == 2
    store = store_of(world, issuer)
    assert import_config(store, newer, terminal="T-0001", now=AT).version == 2


def test_an_older_configuration_is_refused(world: World, issuer: ConfigIssuer) -> None:
    old = exported(world, issuer)
    with world.sessions() as s:
        s.execute(update(Nozzle).where(Nozzle.pump == 1, Nozzle.nozzle == 1).values(price_milli=1699))
        s.commit()
    store = store_of(world, issuer)
    import_config(store, exported(world, issuer), terminal="T-0001", now=AT)
    with pytest.raises(UsbBundleError) as err:
        import_config(store, old, terminal="T-0001", now=AT)
    assert err.value.reason == "old_version" and store.version == 2


def test_a_tampered_configuration_is_refused(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    doc = json.loads(exported(world, issuer))
    doc["config"]["body"]["prices"][0]["price_milli"] = 1
    with pytest.raises(UsbBundleError) as err:
        import_config(store, json.dumps(doc).encode(), terminal="T-0001", now=AT)
    assert err.value.reason == "bad_signature" and store.version == 0
    assert not (world.state / "terminal" / "config.signed.json").exists()


def test_a_configuration_signed_by_another_registry_is_refused(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    rogue = ConfigIssuer(world.state / "rogue-registry")
    with pytest.raises(UsbBundleError) as err:
        import_config(store, exported(world, rogue), terminal="T-0001", now=AT)
    assert err.value.reason == "unknown_key" and store.version == 0


def test_another_terminals_configuration_is_refused(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    with world.sessions() as s:
        station = s.get(Device, "T-0001")
        assert station is not None
        s.add(Device(id="T-0002", station_id=station.station_id, pin_key_hex="00" * 16, status="active"))
        s.commit()
    raw = exported(world, issuer, "T-0002")
    with pytest.raises(UsbBundleError) as err:
        import_config(store, raw, terminal="T-0001", now=AT)
    assert err.value.reason == "wrong_terminal"
    doc = json.loads(raw)
    doc["terminal"] = "T-0001"        # the wrapper says T-0001, the signed configuration T-0002
    with pytest.raises(UsbBundleError) as err:
        import_config(store, json.dumps(doc).encode(), terminal="T-0001", now=AT)
    assert err.value.reason == "malformed" and store.version == 0


def test_an_expired_configuration_is_refused(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    with pytest.raises(UsbBundleError) as err:
        import_config(store, exported(world, issuer), terminal="T-0001", now=AT + dt.timedelta(days=31))
    assert err.value.reason == "expired" and store.version == 0


def test_a_truncated_configuration_file(world: World, issuer: ConfigIssuer) -> None:
    store = store_of(world, issuer)
    raw = exported(world, issuer)
    with pytest.raises(UsbBundleError) as err:
        import_config(store, raw[:-40], terminal="T-0001", now=AT)
    assert err.value.reason == "malformed" and store.version == 0


def test_no_config_for_an_unknown_or_inactive_device(world: World, issuer: ConfigIssuer) -> None:
    with pytest.raises(ConfigError, match="no device"):
        exported(world, issuer, "T-0404")
    with world.sessions() as s:
        device = s.get(Device, "T-0001")
        assert device is not None
        device.status = "revoked"
        s.commit()
    with pytest.raises(ConfigError, match="not active"):
        exported(world, issuer)


# -- the registry's receipt back onto the terminal -----------------------------------------------------------

def trusted_of(issuer: ConfigIssuer) -> dict[str, Ed25519PublicKey]:
    return trusted_from_b64(issuer.config_keys())


def test_a_receipt_marks_the_sales_synced_once(world: World, issuer: ConfigIssuer) -> None:
    ids = [bank_sale(world.journal) for _ in range(3)]
    result = world.imported(world.export())
    raw = receipt(result, world.state / "registry", now=AT)
    got = import_receipt(world.journal, raw, terminal="T-0001", trusted=trusted_of(issuer))
    assert got == ReceiptImport(synced=3, parked=0, released=0, already=0, unknown=0)
    assert world.journal.unsynced() == [] and all(world.journal.get(i).synced for i in ids)
    again = import_receipt(world.journal, raw, terminal="T-0001", trusted=trusted_of(issuer))
    assert again == ReceiptImport(synced=0, parked=0, released=0, already=3, unknown=0)


def test_a_receipt_of_an_import_that_stored_nothing_new_still_acknowledges(world: World,
                                                                          issuer: ConfigIssuer) -> None:
    bank_sale(world.journal)
    raw = world.export()
    world.import_(raw)
    second = world.imported(raw)
    assert [a["status"] for a in second.acks] == ["duplicate"]
    got = import_receipt(world.journal, receipt(second, world.state / "registry", now=AT), terminal="T-0001",
                         trusted=trusted_of(issuer))
    assert got.synced == 1


def test_a_rejected_sale_is_parked_and_a_release_dropped(world: World, issuer: ConfigIssuer) -> None:
    sale_id, release_id = bank_sale(world.journal), str(uuid.uuid4())
    world.journal.put(RELEASE + release_id, "{}")
    key = load_or_create_signing_key(world.state / "registry")
    raw = encode_receipt([{"sale_id": sale_id, "status": "rejected", "reason": "conflict"},
                          {"sale_id": release_id, "status": "stored", "reason": ""},
                          {"sale_id": str(uuid.uuid4()), "status": "stored", "reason": ""}],
                         bundle_id=str(uuid.uuid4()), terminal="T-0001", created_at="2026-06-01T12:00:00Z",
                         key_id=key_id(key.public_key()), private_key=key)
    got = import_receipt(world.journal, raw, terminal="T-0001", trusted=trusted_of(issuer))
    assert got == ReceiptImport(synced=0, parked=1, released=1, already=0, unknown=1)
    assert world.journal.parked_reason(sale_id) == "conflict"
    assert world.journal.get_value(RELEASE + release_id) is None


def test_a_forged_or_foreign_receipt_changes_nothing(world: World, issuer: ConfigIssuer) -> None:
    bank_sale(world.journal)
    result = world.imported(world.export())
    rogue = receipt(result, world.state / "rogue", now=AT)
    doc = json.loads(receipt(result, world.state / "registry", now=AT))
    doc["acks"][0]["status"] = "duplicate"
    # signed by the registry's key, but for another terminal
    foreign = receipt(ImportResult(result.bundle_id, "T-0002", 1, 1, 0, 0, 0, 0, acks=result.acks),
                      world.state / "registry", now=AT)
    for raw, reason in ((rogue, "unknown_key"), (json.dumps(doc).encode(), "bad_signature"),
                        (foreign, "wrong_terminal"), (foreign[:50], "malformed")):
        with pytest.raises(UsbBundleError) as err:
            import_receipt(world.journal, raw, terminal="T-0001", trusted=trusted_of(issuer))
        assert err.value.reason == reason
    assert len(world.journal.unsynced()) == 1


# -- the command line, in process ---------------------------------------------------------------------------

def test_the_command_line_round_trip(world: World, issuer: ConfigIssuer,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization

    from forecourtcli.main import main

    tdir, reg, stick = world.state / "terminal", str(world.state / "registry"), world.state / "stick"
    stick.mkdir()
    key_pem = world.kit.device_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tdir / "device.key").write_bytes(key_pem)
    (tdir / "device.key").chmod(0o600)
    (tdir / "device.pem").write_text(world.kit.cert_pem)
    write_config_keys(tdir, issuer.config_keys())
    (tdir / "terminal.toml").write_text('[terminal]\nid = "T-0001"\nstation = "ST-001"\n')
    config, db = str(tdir / "terminal.toml"), f"sqlite:///{world.state / 'registry.db'}"
    sale_id = bank_sale(world.journal)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["usb", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = run("export-sales", "--config", config, "-o", str(stick / "sales.fcb"))
    assert code == 2 and "import a configuration" in err and "Traceback" not in err
    assert run("bundle-key", "--state-dir", reg, "-o", str(stick / "key.pem"))[0] == 0
    code, out, _ = run("export-sales", "--config", config, "-o", str(stick / "sales.fcb"),
                       "--registry-key", str(stick / "key.pem"))
    assert code == 0 and out.startswith("1 sales not yet acknowledged")
    registry = ("--db", db, "--state-dir", reg, "--tls-dir", str(world.kit.ca.directory))
    code, out, _ = run("import-sales", *registry, "--receipt", str(stick / "receipt.fcr"),
                       str(stick / "sales.fcb"))
    assert code == 0 and "1 sales, 1 new" in out
    code, out, _ = run("import-sales", *registry, str(stick / "sales.fcb"))
    assert code == 0 and "nothing new" in out
    code, out, _ = run("import-receipt", "--config", config, str(stick / "receipt.fcr"))
    assert code == 0 and out.startswith("1 sales synced") and world.journal.get(sale_id).synced

    code, out, _ = run("export-config", "--db", db, "--state-dir", reg, "--device", "T-0001",
                       "-o", str(stick / "config.fcb"))
    assert code == 0
    assert "installed" in run("import-config", "--config", config, str(stick / "config.fcb"))[1]
    assert "nothing changed" in run("import-config", "--config", config, str(stick / "config.fcb"))[1]

    (stick / "bad.fcb").write_bytes(b"not a bundle")
    code, out, err = run("import-sales", *registry, str(stick / "bad.fcb"))
    assert code == 1 and "reason=malformed" in err and err.count("\n") == 1
    code, _, err = run("import-sales", "--db", db, "--state-dir", reg, "--tls-dir", str(stick),
                       str(stick / "sales.fcb"))
    assert code == 2 and "no CA certificate" in err


def test_a_large_bundle_is_stored_in_batches(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.usbimport

    monkeypatch.setattr(registry.usbimport, "IMPORT_BATCH", 2)
    ids = [bank_sale(world.journal) for _ in range(5)]
    result = world.imported(world.export())
    assert (result.stored, len(result.acks)) == (5, 5) and [a["sale_id"] for a in result.acks] == ids
    assert world.mine() == sorted(ids)
