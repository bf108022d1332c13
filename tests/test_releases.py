"""registry.releases and registry.rollout_rules: releases added from signed bundles, waves, halting by
itself, an offline device, a report twice, offers published and cleared."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.bundle import Health, build_bundle
from contracts.errors import ConfigError
from contracts.signing import key_id
from registry.db import open_database
from registry.models import Device, Rollout, RolloutDevice, Station
from registry.releases import (
    Releases,
    add_release,
    halt_rollout,
    read_chunk,
    record_report,
    rollout_status,
    start_rollout,
)
from registry.rollout_rules import bucket, decide, failure_rate_passes, first_wave

KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
NOW = dt.datetime(2026, 12, 1, 12, 0)
DEVICES = [f"T-{n:04d}" for n in range(1, 41)]


def bundle_file(tmp_path: Path, version: str = "1.1.0", key: Ed25519PrivateKey = KEY) -> Path:
    raw = build_bundle(version, {"health.py": b"raise SystemExit(0)\n"},
                       health=Health(("python", "health.py"), 10), private_key=key)
    path = tmp_path / f"upload-{version}.bundle"
    path.write_bytes(raw)
    return path


def released(s: Session, tmp_path: Path, percent: int, halt_at: int) -> Rollout:
    """Release 1.1.0 (bundle_file) and start its rollout: percent of the devices first, halt at halt_at %."""
    add_release(s, bundle_file(tmp_path), tmp_path / "state", TRUSTED, NOW)
    return start_rollout(s, "1.1.0", percent, halt_at, NOW)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, factory = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with factory() as s:
        s.add(Station(id="ST-001", name="Demo"))
        s.flush()
        for i, dev in enumerate(DEVICES):
            s.add(Device(id=dev, station_id="ST-001", pin_key_hex="00" * 16, online=i % 10 != 9))
        s.commit()
    yield factory
    engine.dispose()


class Recorder:
    """The registry link as seen by Releases: what it published, retained offers by topic."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.replies: list[tuple[Any, bytes]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        assert retain
        self.retained[topic] = payload

    def reply(self, request_props: Any, payload: bytes) -> None:
        self.replies.append((request_props, payload))


def recording(sessions: sessionmaker[Session]) -> tuple[Recorder, Releases]:
    """The releases part at NOW, publishing into a Recorder."""
    link = Recorder()
    return link, Releases(sessions, link, clock=lambda: NOW)


def report(device: str, status: str, rollout: int = 1, version: str = "1.1.0") -> dict[str, Any]:
    return {"terminal": device, "version": version, "rollout": rollout, "status": status, "detail": "",
            "at": "2026-12-01T12:00:00Z"}


def statuses(s: Session, rollout: int = 1) -> dict[str, str]:
    rows = s.scalars(select(RolloutDevice).where(RolloutDevice.rollout_id == rollout)).all()
    return {r.device_id: r.status for r in rows}


# -- the pure rules -------------------------------------------------------------------------------------

def test_the_first_wave_is_a_stable_fraction_by_device_id() -> None:
    many = [f"T-{n:05d}" for n in range(2000)]
    wave = first_wave(many, 10)
    assert 150 <= len(wave) <= 250                      # about 10 % of 2000
    assert wave == first_wave(reversed(many), 10) == sorted(d for d in many if bucket(d) < 10)
    assert set(first_wave(many, 10)) <= set(first_wave(many, 30))
    assert first_wave(many, 100) == sorted(many)


def test_a_first_wave_has_at_least_one_device() -> None:
    assert len(first_wave(["T-0001", "T-0002"], 1)) == 1
    assert first_wave([], 10) == []


def test_the_rollout_halts_only_past_the_threshold() -> None:
    assert not failure_rate_passes({"a": "installed"} | {f"f{i}": "failed" for i in range(1)}
                                   | {f"i{i}": "installed" for i in range(3)}, 20)    # 1 of 5 = 20 %
    assert failure_rate_passes({"a": "rolled_back", "b": "installed", "c": "installed"}, 20)   # 33 %
    assert not failure_rate_passes({"a": "offered", "b": "downloading"}, 0)          # none finished


def test_an_offline_device_does_not_hold_back_the_first_wave() -> None:
    wave = {"a": "installed", "b": "offered"}
    everyone = {"a", "b", "c", "d"}
    assert decide(wave, online={"a", "b"}, everyone=everyone, threshold=20).action == "wait"
    expand = decide(wave, online={"a"}, everyone=everyone, threshold=20)
    assert (expand.action, expand.offer) == ("expand", ("c", "d"))


def test_a_rollout_completes_when_every_device_finished() -> None:
    done = {"a": "installed", "b": "installed", "c": "failed"}
    assert decide(done, online=set(), everyone={"a", "b", "c"}, threshold=50).action == "complete"
    assert decide(done | {"d": "offered"}, online=set(), everyone={"a", "b", "c", "d"},
                  threshold=50).action == "wait"


# -- releases and rollouts in the database --------------------------------------------------------------

def test_a_release_is_added_from_a_trusted_bundle_only(tmp_path: Path,
                                                       sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        release = add_release(s, bundle_file(tmp_path), tmp_path / "state", TRUSTED, NOW)
        assert Path(release.path).read_bytes() == bundle_file(tmp_path).read_bytes()
        assert Path(release.path).parent == tmp_path / "state" / "releases"
        with pytest.raises(ConfigError, match="exists already"):
            add_release(s, bundle_file(tmp_path), tmp_path / "state", TRUSTED, NOW)
        with pytest.raises(ConfigError, match="unknown key"):
            add_release(s, bundle_file(tmp_path, "1.2.0", Ed25519PrivateKey.generate()), tmp_path / "state",
                        TRUSTED, NOW)
        with pytest.raises(ConfigError, match="no release 9.9"):
            start_rollout(s, "9.9", 10, 20, NOW)


def test_a_rollout_offers_the_first_wave_then_everyone(tmp_path: Path,
                                                       sessions: sessionmaker[Session]) -> None:
    link, releases = recording(sessions)
    with sessions() as s:
        rollout = released(s, tmp_path, 10, 20)
        wave = first_wave(DEVICES, 10)
        assert sorted(statuses(s)) == wave and set(statuses(s).values()) == {"pending"}
        with pytest.raises(ConfigError, match="still running"):
            start_rollout(s, "1.1.0", 10, 20, NOW)
    releases.tick()
    assert sorted(link.retained) == [protocol.topic("update_offer", terminal=t) for t in wave]
    offer = m.decode(link.retained[protocol.topic("update_offer", terminal=wave[0])], d.UPDATE_OFFER)
    assert (offer["version"], offer["rollout"]) == ("1.1.0", rollout.id)
    with sessions() as s:
        for device in wave:
            assert record_report(s, report(device, "installed"), device, NOW)
        assert s.get(Device, wave[0]).reported_software_version == "1.1.0"   # type: ignore[union-attr]
    releases.tick()
    assert len(link.retained) == len(DEVICES)
    with sessions() as s:
        for device in DEVICES:
            record_report(s, report(device, "installed"), device, NOW)
        assert s.get(Rollout, rollout.id).status == "completed"    # type: ignore[union-attr]


def test_a_rollout_halts_by_itself_and_clears_its_offers(tmp_path: Path,
                                                         sessions: sessionmaker[Session]) -> None:
    link, releases = recording(sessions)
    with sessions() as s:
        released(s, tmp_path, 25, 20)
    releases.tick()
    wave = first_wave(DEVICES, 25)
    with sessions() as s:
        record_report(s, report(wave[0], "installed"), wave[0], NOW)
        record_report(s, report(wave[1], "installed"), wave[1], NOW)
        record_report(s, report(wave[2], "rolled_back"), wave[2], NOW)     # 1 of 3 > 20 %
        assert s.get(Rollout, 1).status == "halted"                 # type: ignore[union-attr]
        assert "failure rate over 20 %" in s.get(Rollout, 1).detail    # type: ignore[union-attr]
    releases.tick()
    with sessions() as s:
        left = statuses(s)
        assert {left[w] for w in wave[3:]} == {"cancelled"}
        assert left[wave[2]] == "rolled_back" and left[wave[0]] == "installed"
        # nobody outside the first wave was offered; the offers not taken are cleared (empty, retained)
        assert set(left) == set(wave)
        assert s.get(Device, wave[3]).desired_software_version is None     # type: ignore[union-attr]
        assert s.get(Device, wave[0]).desired_software_version == "1.1.0"  # type: ignore[union-attr]
    assert all(link.retained[protocol.topic("update_offer", terminal=w)] == b"" for w in wave[3:])
    assert link.retained[protocol.topic("update_offer", terminal=wave[2])] != b""   # reported directly
    assert link.retained[protocol.topic("update_offer", terminal=wave[0])] != b""
    assert rollout_status(sessions())[0]["status"] == "halted"


def test_a_report_twice_or_out_of_order_changes_nothing(tmp_path: Path,
                                                        sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        released(s, tmp_path, 100, 50)
        device = DEVICES[0]
        assert record_report(s, report(device, "downloading"), device, NOW)
        assert not record_report(s, report(device, "downloading"), device, NOW)
        assert record_report(s, report(device, "installed"), device, NOW)
        assert not record_report(s, report(device, "installed"), device, NOW)
        assert not record_report(s, report(device, "rolled_back"), device, NOW)   # final stays
        assert not record_report(s, report(device, "installed", rollout=7), device, NOW)
        assert not record_report(s, report(device, "installed", version="0.9"), device, NOW)
        assert statuses(s)[device] == "installed"


def test_a_piece_of_the_bundle_goes_only_to_a_device_offered_it(tmp_path: Path,
                                                               sessions: sessionmaker[Session]) -> None:
    path = bundle_file(tmp_path)
    with sessions() as s:
        add_release(s, path, tmp_path / "state", TRUSTED, NOW)
        start_rollout(s, "1.1.0", 1, 20, NOW)
        chosen = first_wave(DEVICES, 1)[0]
        other = next(x for x in DEVICES if x != chosen)
        assert read_chunk(s, chosen, "1.1.0", 100, 50) == path.read_bytes()[100:150]
        assert read_chunk(s, chosen, "1.1.0", 10**6, 50) == b""
        assert read_chunk(s, other, "1.1.0", 0, 50) is None
        assert read_chunk(s, chosen, "2.0", 0, 50) is None


def test_fetches_and_reports_for_another_terminal_are_dropped(tmp_path: Path,
                                                            sessions: sessionmaker[Session]) -> None:
    link, releases = recording(sessions)
    fetch, on_report = dict(releases.handlers()).values()
    doc = {"terminal": "T-0002", "version": "1.1.0", "offset": 0, "length": 10}
    fetch(protocol.topic("update_fetch", terminal="T-0001"), m.encode(doc, d.UPDATE_FETCH), None)
    on_report(protocol.topic("update_report", terminal="T-0001"),
              m.encode(report("T-0002", "installed"), d.UPDATE_REPORT), None)
    on_report(protocol.topic("update_report", terminal="T-0001"), json.dumps({"v": 1}).encode(), None)
    assert releases.malformed == 3 and link.replies == []


# -- the command line -------------------------------------------------------------------------------------

def test_a_release_is_built_added_and_rolled_out_from_the_command_line(
        tmp_path: Path, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import EXIT_OK, EXIT_USAGE, main
    from registry.configs import KEY_FILE, load_or_create_signing_key

    state = tmp_path / "registry"
    state.mkdir()
    load_or_create_signing_key(state)            # the key the registry signs configurations with
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "health.py").write_text("raise SystemExit(0)\n")
    (src / "lib" / "app.txt").write_text("v2")
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    out = tmp_path / "2.0.0.bundle"
    assert main(["release", "build", "--version", "2.0.0", "--dir", str(src), "-o", str(out),
                 "--key", str(state / KEY_FILE)]) == EXIT_OK
    assert main(["registry", "release", "add", str(out), "--db", db, "--state-dir", str(state)]) == EXIT_OK
    assert main(["registry", "rollout", "start", "2.0.0", "--percent", "10", "--halt-at", "20",
                 "--db", db]) == EXIT_OK
    assert main(["registry", "rollout", "status", "--db", db]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "release 2.0.0: " in printed and "rollout 1 of 2.0.0: first wave 10 %" in printed
    assert f"pending {len(first_wave(DEVICES, 10))}" in printed
    assert main(["registry", "rollout", "halt", "1", "--db", db]) == EXIT_OK
    with sessions() as s:
        assert s.get(Rollout, 1).status == "halted"           # type: ignore[union-attr]
    # a bundle signed by another key than the registry's is refused, with one line and exit 2
    other = tmp_path / "other.key"
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    other.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                                 NoEncryption()))
    assert main(["release", "build", "--version", "2.0.1", "--dir", str(src), "-o", str(out),
                 "--key", str(other)]) == EXIT_OK
    capsys.readouterr()
    assert main(["registry", "release", "add", str(out), "--db", db, "--state-dir", str(state)]) == EXIT_USAGE
    assert "unknown key" in capsys.readouterr().err


def test_a_device_that_rolled_back_gets_its_offer_withdrawn(tmp_path: Path,
                                                            sessions: sessionmaker[Session]) -> None:
    link, releases = recording(sessions)
    _, on_report = dict(releases.handlers()).values()
    with sessions() as s:
        released(s, tmp_path, 1, 20)
    releases.tick()
    device = first_wave(DEVICES, 1)[0]
    topic = protocol.topic("update_offer", terminal=device)
    assert link.retained[topic] != b""
    on_report(protocol.topic("update_report", terminal=device),
              m.encode(report(device, "rolled_back"), d.UPDATE_REPORT), None)
    assert link.retained[topic] == b""
    with sessions() as s:
        assert s.get(Device, device).desired_software_version is None      # type: ignore[union-attr]
        assert s.get(Rollout, 1).status == "halted"                         # type: ignore[union-attr]


def test_a_report_after_a_halt_is_kept(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        released(s, tmp_path, 100, 20)
        halt_rollout(s, 1, NOW)
        assert record_report(s, report(DEVICES[0], "installed"), DEVICES[0], NOW)
    with sessions() as s:
        assert statuses(s)[DEVICES[0]] == "installed"
        assert s.get(Rollout, 1).status == "halted"               # type: ignore[union-attr]


@pytest.mark.parametrize(("args", "message"), [
    (["--version", "1 0"], "bundle not built"),
    (["--dir", "/nonexistent/src"], "not a directory"),
    (["--key", "/nonexistent/key"], "not a readable PEM private key"),
    (["--health", ""], "--health must name a command"),
])
def test_release_build_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     args: list[str], message: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from forecourtcli.main import EXIT_USAGE, main

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "health.py").write_text("raise SystemExit(0)\n")
    key = tmp_path / "k.pem"
    key.write_bytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    base = {"--version": "1.0", "--dir": str(tmp_path / "src"), "--key": str(key), "-o": str(tmp_path / "b")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["release", "build", *[x for kv in base.items() for x in kv]]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
