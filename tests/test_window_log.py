"""The log pane's masking and tailing (hostsim.window_log): no card number, track, PIN or key reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostsim.window_log import LogTail, mask, shorten


@pytest.mark.parametrize(("line", "secret"), [
    ("card 7077001000000019 read", "7077001000000019"),
    ("pan 4761 7390 0101 0143 spaced", "4761 7390 0101 0143"),
    ("track 4761739001010143=31062010000000000000 swiped", "31062010000000000000"),
    ("driver keyed PIN 1234", "1234"),
    ("pin=4321 pin_block=0412AC89FFFFFFFF", "4321"),
    ("key 0123456789ABCDEF0123456789ABCDEF", "0123456789ABCDEF"),
    ('{"time": "2026-12-01T17:00:00", "level": "INFO", "msg": "x", "pan": "5413330089010012"}',
     "5413330089010012"),
])
def test_mask_blanks_secrets(line: str, secret: str) -> None:
    assert secret not in shorten(line) and secret not in mask(line)


def test_mask_keeps_what_an_operator_needs() -> None:
    line = ("2026-12-01 17:16:29,872 terminal INFO firmware.hostlink: sale synced reason= "
            "sale_id=3709f9f8-7517-4118-b92e-413ef5154ade status=stored volume_cl=2000 card=707700******0019")
    assert shorten(line) == ("17:16:29 INFO hostlink: sale synced reason= "
                             "sale_id=3709f9f8-7517-4118-b92e-413ef5154ade "
                             "status=stored volume_cl=2000 card=707700******0019")
    assert mask("card 7077001000000019") == "card ************0019"


def test_tail_reads_only_whole_new_lines_and_survives_truncation(tmp_path: Path) -> None:
    log = tmp_path / "terminal.log"
    tail = LogTail(log)
    assert tail.poll() == 0                             # no file yet
    log.write_text("one\ntw")
    assert tail.poll() == 1 and list(tail.lines) == ["one"]
    with log.open("a") as f:
        f.write("o 7077001000000019\n")
    assert tail.poll() == 1 and list(tail.lines) == ["one", "two ************0019"]
    log.write_text("new\n")                             # replaced: read from the start again
    assert tail.poll() == 1 and list(tail.lines)[-1] == "new"


def test_the_simulators_own_notes_are_masked_too(tmp_path: Path) -> None:
    tail = LogTail(tmp_path / "terminal.log")
    tail.note("card 7077001000000019 pulled")
    assert tail.lines[-1].endswith(" SIM card ************0019 pulled")
