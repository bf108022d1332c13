"""provisioning.sam (`forecourt provision sam`) with a real simulated SAM behind drivers.cardreader's memory
reader and the registry answering in-process (registry.purse.enrol.answer_sam_enrolment on a real SQLite
registry): a blank SAM personalised, an interrupted run resumed, answers that do not check refused before
anything reaches the SAM, and the `provision sam` and `registry purse-sam` commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from test_purse_enrol import NOW, SAM_A, SAM_B, Reg, T, reg

from contracts import purse_sam_apdu as sa
from contracts.errors import ConfigError, HostUnavailable, MessageError
from drivers.cardreader import MemoryReader
from firmware.config import load_config
from forecourtcli.main import main
from hostsim.cards.purse_sam import PurseSam
from provisioning.sam import SAM_FILE, SamFitError, check_answer, enrolment_request, fit_sam, provision_sam
from registry.models import Device
from registry.purse.enrol import sam_enrol, sams
from registry.service_desk_ask import Ask, Refused

__all__ = ["reg"]          # the fixture, from test_purse_enrol


class Desk:
    """The registry's service desk for this test: a request as the terminal sends it, answered in-process
    and committed; `fail` makes the next ask lose its answer (the broker or the registry away)."""

    def __init__(self, reg: Reg, terminal: str = "T-0001") -> None:
        self.reg, self.terminal, self.fail, self.asked = reg, terminal, False, 0

    def __call__(self, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        self.asked += 1
        if self.fail:
            self.fail = False
            raise HostUnavailable("no answer from host in time")
        req = {"request_id": str(uuid.uuid4()), "terminal": self.terminal, "station": "ST-001", **fields}
        with self.reg.sm() as s:
            device = s.get(Device, self.terminal)
            assert device is not None
            result = sam_enrol(Ask(s, self.reg.keys, device, req, NOW))     # as the service desk calls it
            s.commit()
        return json.loads(json.dumps(result))          # as it crosses MQTT


def slot(sam: PurseSam) -> MemoryReader:
    reader = MemoryReader(sam)
    reader.connect()
    return reader


def test_a_blank_sam_is_fitted_through_the_reader(reg: Reg, tmp_path: Path) -> None:
    sam = PurseSam(SAM_A)
    reader = slot(sam)
    done = fit_sam(reader.transmit, Desk(reg), now=T, state_dir=tmp_path)
    assert (done.sam_id, done.key_version, done.changed) == (SAM_A, 1, True)
    assert sam.info() == sa.SamInfo(SAM_A, sa.SamState.PERSONALIZED, 1)
    kept = json.loads((tmp_path / SAM_FILE).read_text())
    assert set(kept) == {"sam_id", "public_key", "key_version", "expiry"} and kept["sam_id"] == SAM_A.hex()
    with reg.sm() as s:
        assert reg.issuer(s).sam_key(SAM_A, 1).hex() not in (tmp_path / SAM_FILE).read_text()
        assert [(r.sam_id, r.terminal) for r in sams(s)] == [(SAM_A.hex(), "T-0001")]
    again = fit_sam(reader.transmit, Desk(reg), now=T + 60, state_dir=tmp_path)
    assert not again.changed and again.key_version == 1


def test_an_interrupted_run_resumes_from_the_kept_public_key(reg: Reg, tmp_path: Path) -> None:
    sam, desk = PurseSam(SAM_A), Desk(reg)
    reader = slot(sam)
    desk.fail = True
    with pytest.raises(HostUnavailable):
        fit_sam(reader.transmit, desk, now=T, state_dir=tmp_path)
    assert sam.state is sa.SamState.KEYED and (tmp_path / SAM_FILE).exists()
    done = fit_sam(reader.transmit, desk, now=T, state_dir=tmp_path)
    assert done.changed and sam.state is sa.SamState.PERSONALIZED and desk.asked == 2


def test_a_keyed_sam_whose_key_was_not_kept_cannot_go_on(reg: Reg, tmp_path: Path) -> None:
    sam = PurseSam(SAM_A)
    reader = slot(sam)
    reader.transmit(sa.select())
    reader.transmit(sa.generate_key_pair())
    with pytest.raises(SamFitError) as lost:
        fit_sam(reader.transmit, Desk(reg), now=T, state_dir=tmp_path)
    assert lost.value.reason == "key_unknown"


def test_a_personalised_sam_without_its_file_shows_its_key_in_its_certificate(reg: Reg,
                                                                              tmp_path: Path) -> None:
    sam = PurseSam(SAM_A)
    fit_sam(slot(sam).transmit, Desk(reg), now=T, state_dir=None)
    done = fit_sam(slot(sam).transmit, Desk(reg), now=T, state_dir=tmp_path)
    assert not done.changed and json.loads((tmp_path / SAM_FILE).read_text())["key_version"] == 1


def test_answers_that_do_not_check_reach_no_sam(reg: Reg, tmp_path: Path) -> None:
    other = PurseSam(SAM_B)
    reader = slot(other)
    reader.transmit(sa.select())
    other_key = sa.split_answer(reader.transmit(sa.generate_key_pair()))[0]
    desk = Desk(reg)
    answer = desk(enrolment_request(SAM_B, other_key))
    assert check_answer(answer, sam_id=SAM_B, public_key=other_key, now=T).key_version == 1
    sam = PurseSam(SAM_A)
    for forged in ({**answer, "sam_id": SAM_A.hex()},                     # B's certificate for A
                   {**answer, "certificate": "00" + answer["certificate"][2:]},
                   {**answer, "key_version": 0}, {**answer, "certificate": "zz"}):
        with pytest.raises(MessageError):
            fit_sam(slot(sam).transmit, lambda fields, forged=forged: forged, now=T, state_dir=tmp_path)
        assert sam.state is sa.SamState.KEYED and sam.key_version == 0
    with pytest.raises(MessageError):                                     # expired by the terminal's clock
        check_answer(answer, sam_id=SAM_B, public_key=other_key, now=answer["expiry"] + 1)


def test_a_refusal_leaves_the_sam_keyed(reg: Reg, tmp_path: Path) -> None:
    fit_sam(slot(PurseSam(SAM_A)).transmit, Desk(reg), now=T, state_dir=tmp_path / "first")
    same_id = PurseSam(SAM_A)                      # a second SAM claiming the id (another key), elsewhere
    with pytest.raises(Refused) as refused:
        fit_sam(slot(same_id).transmit, Desk(reg, "T-0002"), now=T, state_dir=tmp_path / "second")
    assert refused.value.reason == "not_allowed" and same_id.state is sa.SamState.KEYED   # its key is pinned


def _terminal_toml(tmp_path: Path, devices: str = "") -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text('[terminal]\nid = "T-0001"\nstation = "ST-001"\n' + devices, encoding="utf-8")
    return path


def test_provision_sam_needs_a_sam_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError):
        provision_sam(load_config(_terminal_toml(tmp_path), profile="sim"))
    assert main(["provision", "sam", "--config", str(_terminal_toml(tmp_path))]) == 2
    assert "sam_reader" in capsys.readouterr().err
    cfg = load_config(_terminal_toml(tmp_path, '[devices]\nsam_reader = "memory://"\n'), profile="sim")
    assert cfg.devices.sam_reader == "memory://"
    with pytest.raises(ConfigError):                  # no TLS identity to ask the registry with
        provision_sam(cfg)


def test_the_operator_lists_releases_and_revokes_sams(reg: Reg, capsys: pytest.CaptureFixture[str]) -> None:
    sam = PurseSam(SAM_A)
    fit_sam(slot(sam).transmit, Desk(reg), now=T)
    assert main(["registry", "purse-sam", "list", "--db", reg.url]) == 0
    assert f"{SAM_A.hex()}  T-0001    active  1" in capsys.readouterr().out
    assert main(["registry", "purse-sam", "release", SAM_A.hex(), "--db", reg.url, "--reason", "pump 2"]) == 0
    assert "released" in capsys.readouterr().out
    fit_sam(slot(sam).transmit, Desk(reg, "T-0002"), now=T)      # the same SAM, moved: the other terminal may
    assert main(["registry", "purse-sam", "revoke", SAM_A.hex(), "--db", reg.url, "--reason", "lost"]) == 0
    assert main(["registry", "purse-sam", "list", "--db", reg.url, "--terminal", "T-0002"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["registry", "purse-sam", "revoke", SAM_B.hex(), "--db", reg.url, "--reason", "x"]) == 2
