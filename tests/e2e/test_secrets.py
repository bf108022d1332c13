"""After a whole simulated run (fleet and bank cards, chip, swipe, right and wrong PINs, and a new device
enrolled with key injection), no file the terminal, the registry, the simulator, the broker or provisioning
wrote holds a full card number, track 2 data, a clear PIN block, a PIN or a key; a key appears only in its
own key file, mode 0600, and the registry database holds device keys only wrapped under its KEK.

The keys of issue 13 are in the list: the fleet authority's (CA, broker, registry, claim; EC P-256), the
registry's configuration signing key (Ed25519), PIN base key, BDK and USB bundle key (P-256), each device
key, and the DUKPT initial key and fleet PIN key a new device gets sealed at enrollment."""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import json
import shutil
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key
from hostsim import world
from hostsim.bank_world import BDK, KEY_ID
from hostsim.scenarios import Run, fleet_happy
from hostsim.scenarios_bank import bank_fallback_magstripe, bank_happy
from hostsim.services import Process, ServiceError, wait_port
from hostsim.world import FIXTURES, Simulator, card_index, load_cards
from provisioning.enroll import InitOptions, enroll
from registry import devices
from registry.broker import broker_config, write_acl
from registry.db import open_database
from registry.keys import KEK_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A PIN no timestamp, UUID or counter will contain by chance.
WRONG_PIN = "731902468135"
PINS = ("1234", "9999", WRONG_PIN)      # every PIN this run enters


# -- what must not leak ----------------------------------------------------------------------------------

def fixture_cards() -> list[dict[str, str]]:
    """Every card of the simulator's fixtures: fleet cards (picker and registry seed) and EMV profiles."""
    cards = [{"pan": c.fields["pan"]} for c in load_cards() if c.kind == "fleet"]
    seed = tomllib.loads((FIXTURES / "seed.toml").read_text())
    cards += [{"pan": c["pan"]} for c in seed.get("cards", [])]
    for path in sorted((FIXTURES / "emv").glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        if "card" in doc:
            card = {"pan": doc["card"]["pan"]}
            if "track2" in doc.get("magstripe", {}):
                card["track2"] = doc["magstripe"]["track2"]
            cards.append(card)
    return cards


def _nibbles(text: str) -> bytes:
    return bytes.fromhex(text if len(text) % 2 == 0 else text + "F")


def clear_pin_blocks(pan: str, pin: str) -> list[bytes]:
    """ISO 9564-1 clear PIN blocks of this PIN: format 0 (PIN field XOR PAN field), the deterministic
    first half of format 4's plain PIN field ("4", length, PIN, fill A) and format 2 (offline, fill F)."""
    pin_field0 = _nibbles(f"0{len(pin):X}{pin}".ljust(16, "F"))
    pan_field0 = bytes.fromhex("0000" + pan[-13:-1])
    fmt0 = bytes(a ^ b for a, b in zip(pin_field0, pan_field0, strict=True))
    fmt4 = bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A"))
    fmt2 = bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))
    return [fmt0, fmt4, fmt2]


def forms(secret: bytes) -> list[bytes]:
    """A binary secret as stored in any way we know: raw, hex in either case, and base64 at each of the
    three alignments it can have inside a longer base64 text (a PEM, a JSON field), without the
    characters its neighbours share."""
    found = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        text = base64.b64encode(bytes(shift) + secret)
        first = (8 * shift + 5) // 6                        # the first character of the secret's bits only
        last = (8 * (shift + len(secret))) // 6             # the characters after it share later bits
        found.append(text[first:last])
    return found


def private_bytes(path: Path) -> bytes:
    """The secret of a PEM private key file: an EC key's private scalar (32 bytes for P-256), an
    Ed25519 key's seed (RFC 8032 5.1.5)."""
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")
    if isinstance(key, Ed25519PrivateKey):
        return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    raise AssertionError(f"{path.name}: a key of another kind")


def hex_file(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def dukpt_file(path: Path) -> bytes:
    return bytes.fromhex(tomllib.loads(path.read_text())["initial_key"])


def named_as_key(path: Path) -> bool:
    """A file whose name says it holds a key: *.key, *.hex (pek, kek, bdk, pin-base-key) or *key*.json."""
    return path.suffix in (".key", ".hex") or ("key" in path.name and path.suffix == ".json")


def card_needles(cards: list[dict[str, str]]) -> dict[str, list[bytes]]:
    needles: dict[str, list[bytes]] = {}
    for card in cards:
        pan = card["pan"]
        label = f"card {pan[:6]}...{pan[-4:]}"
        needles[label] = [pan.encode(), pan.encode().hex().encode(), _nibbles(pan),
                          pan.encode("utf-16-le")]
        if "track2" in card:
            needles[label] += [card["track2"].encode(), card["track2"].replace("=", "D").encode()]
        for pin in PINS:
            for block in clear_pin_blocks(pan, pin):
                needles.setdefault(f"clear PIN block ({label})", []).extend(forms(block))
    needles["PIN digits"] = [WRONG_PIN.encode(), WRONG_PIN.encode("utf-16-le")]
    return needles


def simulator_keys() -> dict[str, bytes]:
    """The DUKPT initial key, the BDK, the first working keys the PIN pad hands out and the issuer master
    keys of the test cards (the simulated acquirer holds them in memory only)."""
    initial = derive_initial_key(BDK, KEY_ID)
    keys = {"DUKPT initial key": initial, "BDK": BDK}
    for path in sorted((FIXTURES / "emv").glob("*.toml")):
        for name, value in tomllib.loads(path.read_text()).get("keys", {}).items():
            if name.startswith("imk_"):
                keys[f"{path.stem} {name}"] = bytes.fromhex(value)
    pad = TerminalDukpt(initial, KEY_ID)
    for i in range(12):
        keys[f"DUKPT working key {i + 1}"] = pad.next_transaction("pin_encryption")[1]
    return keys


# -- the run ------------------------------------------------------------------------------------------------

def persistent_broker(state_dir: Path, port: int, *, tls_dir: Path | None = None) -> Process:
    """Mosquitto persisting to disk, as `forecourt broker-config --data-dir` sets it up."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise ServiceError("mosquitto is not installed")
    data = state_dir / "mosquitto-data"
    data.mkdir(exist_ok=True)
    conf = state_dir / "mosquitto.conf"
    # as root, mosquitto would drop to its own user, which cannot enter pytest's 0700 directories
    if tls_dir is not None:
        write_acl(tls_dir)
    conf.write_text(broker_config(port, data_dir=data, user=getpass.getuser(), tls_dir=tls_dir))
    proc = Process("mosquitto", [exe, "-c", str(conf)], state_dir / "mosquitto.log")
    wait_port(port, 10, proc)
    return proc


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    monkeypatch.setattr(world, "start_mosquitto", persistent_broker)
    s = Simulator(tmp_path / "sim").start()
    try:
        yield s
    finally:
        s.stop()


def fleet_wrong_pin(run: Run) -> None:
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin(WRONG_PIN)
    run.wait("declined", mark)
    run.remove()
    run.wait("idle", mark)


def bank_wrong_pin(run: Run) -> None:
    run.ready()
    mark = run.insert(card_index("visa_dda_online_pin"))
    run.wait("enter_pin", mark)
    run.pin("9999")                                      # an online PIN block under DUKPT, refused (55)
    run.wait("declined", mark, timeout=30)
    run.remove()
    run.wait("idle", mark)


def mastercard_offline_pin(run: Run) -> None:
    run.ready()
    mark = run.insert(card_index("mc_cda_offline_pin"))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    run.fill(1, 1, 700)
    run.wait("thank_you", mark, timeout=30)
    run.wait_synced(run.last_sale_id())


NEW_DEVICE, NEW_SERIAL = "T-0777", "SN-SECRETS-1"


def enroll_new_device(sim: Simulator) -> tuple[Path, list[str], str]:
    """`forecourt provision init` of a device whose serial was registered ahead (accepted at once): its
    certificate, configuration keys and keys sealed to its device key come over the simulator's broker."""
    engine, sessions = open_database(sim.registry_url)
    try:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with sessions() as s:
            devices.import_expected(s, f"{NEW_SERIAL},{sim.device['station']},{NEW_DEVICE}\n", now)
            token = devices.create_token(s, sim.device["station"], now)
    finally:
        engine.dispose()
    said: list[str] = []
    state = sim.state / "provisioned"
    done = enroll(InitOptions(state_dir=state, host="127.0.0.1", port=sim.broker_port, token=token,
                              serial=NEW_SERIAL, claim_dir=sim.authority.directory, wait=30.0),
                  say=said.append)
    assert done.device_id == NEW_DEVICE
    assert not any(token in line for line in said), "the enrollment token in provisioning's output"
    return state, said, token


def test_no_card_data_pin_or_key_anywhere(sim: Simulator, run: Run) -> None:
    for scenario in (fleet_wrong_pin, fleet_happy, bank_happy, bank_wrong_pin, bank_fallback_magstripe,
                     mastercard_offline_pin):
        sim.acquirer.advices.clear()                      # each scenario counts its own advices
        scenario(run)
        assert not run.checks, f"{scenario.__name__}: {run.checks}"
    ndir, said, token = enroll_new_device(sim)
    receipts = "\n".join(sim.printer.receipts).encode()
    screens = repr(sim.panel.screens).encode()
    for proc in (sim.terminal, sim.registry):             # every process flushes and closes its files
        if proc is not None:
            proc.stop()
    sim.terminal = sim.registry = None
    sim.stop_broker()                                     # mosquitto saves its persistence file

    state = sim.state
    tdir, rdir, pki = state / "terminal", state / "registry", state / "pki"
    registry_keys = json.loads((rdir / "registry-keys.json").read_text())
    key_files: dict[Path, dict[str, bytes]] = {
        tdir / "pek.hex": {"terminal PIN key": bytes.fromhex(sim.device["pin_key"])},
        tdir / "dukpt.toml": {"DUKPT initial key": derive_initial_key(BDK, KEY_ID)},
        tdir / "token.key": {"card-token key": bytes.fromhex((tdir / "token.key").read_text())},
        tdir / "saf.key": {"advice-store key": bytes.fromhex((tdir / "saf.key").read_text())},
        tdir / "device.key": {"terminal device key": private_bytes(tdir / "device.key")},
        rdir / "registry-keys.json": {f"registry {k}": bytes.fromhex(v) for k, v in registry_keys.items()},
        rdir / "kek.hex": {"registry KEK": bytes.fromhex((rdir / "kek.hex").read_text())},
        rdir / "config-signing.key": {"config signing key": private_bytes(rdir / "config-signing.key")},
        rdir / "pin-base-key.hex": {"PIN base key": hex_file(rdir / "pin-base-key.hex")},
        rdir / "bdk.hex": {"BDK": hex_file(rdir / "bdk.hex")},
        rdir / "usb-bundle.key": {"USB bundle key": private_bytes(rdir / "usb-bundle.key")},
        **{pki / f"{n}.key": {f"{n} key (authority)": private_bytes(pki / f"{n}.key")}
           for n in ("ca", "broker", "registry", "claim")},
        ndir / "device.key": {"new device key": private_bytes(ndir / "device.key")},
        ndir / "pek.hex": {"enrolled fleet PIN key": hex_file(ndir / "pek.hex")},
        ndir / "dukpt.toml": {"enrolled DUKPT initial key": dukpt_file(ndir / "dukpt.toml")},
    }
    assert hex_file(rdir / "bdk.hex") == BDK
    keys = {**simulator_keys(), **{name: key for found in key_files.values() for name, key in found.items()}}
    for path in key_files:
        assert path.stat().st_mode & 0o777 == 0o600, f"{path.name} is not 0600"
    named = [p for p in state.rglob("*") if p.is_file() and named_as_key(p)]
    assert set(key_files) - {tdir / "dukpt.toml", ndir / "dukpt.toml"} <= set(named)
    for path in named:
        assert path.stat().st_mode & 0o777 == 0o600, f"{path.relative_to(state)} is not 0600"

    files = [p for p in state.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"terminal.log", "registry.log", "mosquitto.log", "pcscd.log", "journal.db", "advices.db",
            "registry.db", "mosquitto.db"} <= names, names
    blobs = {str(p.relative_to(state)): p.read_bytes() for p in files}
    blobs |= {"receipts": receipts, "screens": screens, "transcript": "\n".join(run.transcript).encode(),
              "provision output": "\n".join(said).encode()}

    needles = card_needles(fixture_cards())
    # the one-time enrollment token: the registry keeps its SHA-256, provisioning nothing (used by now, and
    # still it must not be readable where it was handled)
    needles["enrollment token"] = [token.encode()]
    key_forms = {name: forms(key) for name, key in keys.items()}
    for where, data in blobs.items():
        unwrapped = data.replace(b"\n", b"").replace(b"\\n", b"")     # base64 across PEM lines
        for what, forms_of in needles.items():
            assert not any(n in data for n in forms_of), f"{what} in {where}"
        for name, found in key_forms.items():
            own = any(state / where == path and name in owned for path, owned in key_files.items())
            if not own:
                assert not any(n in data or n in unwrapped for n in found), f"{name} in {where}"

    registry_db = b"".join(blobs[w] for w in blobs if w.startswith("registry/registry.db"))
    assert KEK_PREFIX.encode() in registry_db                 # the device key is there, wrapped


def test_broker_persistence_holds_no_card_number_while_the_registry_is_away(sim: Simulator, run: Run) -> None:
    """The broker queues a fleet authorization request (message expiry = auth timeout) for the registry's
    persistent session while the registry is away, and saves it to disk on shutdown: the card number in
    it is sealed (contracts.panseal), never in clear (issue 10)."""
    run.ready()
    assert sim.registry is not None
    sim.registry.stop()                                   # clean disconnect: its session (1 h) stays
    sim.registry = None
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    time.sleep(1.0)                                       # the request is queued for the registry
    sim.stop_broker()
    pan = load_cards()[0].fields["pan"].encode()
    persisted = b"".join(p.read_bytes() for p in (sim.state / "mosquitto-data").rglob("*") if p.is_file())
    assert persisted, "the broker saved its state"
    assert b'"pan_sealed":"01' in persisted, "the request was queued and saved: the check below bites"
    leaked = pan in persisted
    assert not leaked, "full card number in the broker's persistence file"
