"""The pump node under MicroPython against the terminal's real PulserController, through a pty.

tests/micropython/run_node.mjs runs drivers/pulser/board.py (with meter.py, wire.py, node.py, unchanged)
in the MicroPython WebAssembly port under Node, on a simulated meter; the node's UART is the master side
of a pty this test opens, and the controller opens the other side as it would /dev/ttyAMA1.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import tty
from collections.abc import Iterator

import pytest

from contracts.pump import PumpState, PumpStatus
from drivers.pulser import wire
from drivers.pulser.controller import PulserController
from drivers.pulser.link import NodeLink, open_node_port
from tests.micropython_npm import HERE, REPO, npm_install

PRICE = 1659                 # 1.659 per litre
K = 100000                   # 100 pulses per litre: one pulse a centilitre


class MicroPythonNode:
    """run_node.mjs in a subprocess: the pty's master side, commands on stdin, lines on stdout."""

    def __init__(self, node: str) -> None:
        master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        try:
            self.proc = subprocess.Popen(
                [node, str(HERE / "run_node.mjs"), "--fd", str(master), "--flow", "2000"], cwd=REPO,
                pass_fds=[master], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
        finally:
            os.close(master)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """The next stdout line starting with prefix (lines before it are kept in .lines)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from the node; so far: {self.lines}; "
                                     f"exit code {self.proc.poll()}") from None
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def send(self, command: str, reply: str) -> dict[str, int]:
        """A command; its answer's key=value fields."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.expect(reply)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def close(self) -> str:
        """Quit; its stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=2)
        err = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        os.close(self.slave)
        return err


@pytest.fixture
def node() -> Iterator[MicroPythonNode]:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed (scripts/setup.sh installs nodejs and npm)")
    npm_install()
    mp = MicroPythonNode(exe)
    try:
        mp.expect("MicroPython ")
        mp.expect("ready")
        yield mp
    finally:
        err = mp.close()
        assert "MicroPython raised" not in err, err


@pytest.fixture
def pump(node: MicroPythonNode) -> Iterator[tuple[PulserController, NodeLink]]:
    link = NodeLink(open_node_port(node.port, 115200))
    controller = PulserController({1: link}, k_milli={1: K}, slow_cl=50)
    with controller:
        controller.set_prices(1, {1: PRICE})
        controller.wait_status(1, lambda st: st.state is PumpState.RESET, 5)
        yield controller, link


def _finished(st: PumpStatus) -> bool:
    return st.state.finished


def test_whole_sale_stops_at_the_preset(node: MicroPythonNode,
                                        pump: tuple[PulserController, NodeLink]) -> None:
    controller, _ = pump
    assert re.fullmatch(r"MicroPython \d+\.\d+\.\d+", node.lines[0])
    before = controller.totals(1, 1)
    controller.authorize(1, nozzles=[1], volume_cl=2000)
    node.send("lift", "lift ok")
    st = controller.wait_status(1, _finished, 10)
    assert st.state is PumpState.MAX_REACHED
    assert (st.volume_cl, st.amount_cents) == (2000, 3318)      # 20.00 L at 1.659
    after = controller.totals(1, 1)
    assert (after.volume_cl - before.volume_cl, after.amount_cents - before.amount_cents) == (2000, 3318)
    fields = node.send("status", "status")
    assert fields["relays"] == 0 and fields["count"] == 2000 and fields["wdt"] > 0


def test_lost_frames_and_noise_act_once(node: MicroPythonNode,
                                         pump: tuple[PulserController, NodeLink]) -> None:
    controller, link = pump
    node.send(f"drop request {wire.AUTHORIZE}", "drop ok")
    node.send(f"drop reply {wire.AUTHORIZE}", "drop ok")
    node.send("noise", "noise ok")                            # garbage on the line ahead of it, too
    controller.authorize(1, nozzles=[1], volume_cl=500)      # a NAK (busy) if the retry acted again
    assert link.retries >= 2
    node.expect("dropped request type=2")
    node.expect("dropped reply type=2")
    fields = node.send("status", "status")
    assert fields["number"] == 1 and fields["rx_dropped"] >= 2              # one filling opened
    node.send("lift", "lift ok")
    st = controller.wait_status(1, _finished, 10)
    assert (st.state, st.volume_cl) == (PumpState.MAX_REACHED, 500)
    assert controller.totals(1, 1).volume_cl == 500
    assert node.send("status", "status")["number"] == 1


def test_restart_mid_filling_settles_once(node: MicroPythonNode, pump: tuple[PulserController, NodeLink],
                                          caplog: pytest.LogCaptureFixture) -> None:
    controller, _ = pump
    caplog.set_level(logging.WARNING, logger="drivers.pulser.controller")
    before = controller.totals(1, 1)
    controller.authorize(1, nozzles=[1], volume_cl=8000)
    node.send("lift", "lift ok")
    controller.wait_status(1, lambda st: st.state is PumpState.FILLING and st.volume_cl >= 1500, 10)
    first = node.send("restart", "restarted")
    saved = first["count"]                     # the pulses in the node's last snapshot: 1 cl each
    assert first["boot"] == 2 and first["state"] == 5 and first["relays"] == 0 and 0 < saved < 8000
    assert first["total_cl"] == before.volume_cl + saved
    st = controller.wait_status(1, _finished, 5)
    assert (st.state, st.volume_cl, st.amount_cents) == (PumpState.FILLING_COMPLETED, saved,
                                                         (saved * PRICE + 500) // 1000)
    assert controller.totals(1, 1).volume_cl == before.volume_cl + saved
    _wait_restarts_logged(caplog, 1)

    second = node.send("restart", "restarted")
    assert (second["boot"], second["state"], second["count"], second["total_cl"]) == (
        3, 5, saved, first["total_cl"])
    _wait_restarts_logged(caplog, 2)
    st = controller.status(1)
    assert (st.state, st.volume_cl) == (PumpState.FILLING_COMPLETED, saved)
    assert controller.totals(1, 1).volume_cl == before.volume_cl + saved


def _wait_restarts_logged(caplog: pytest.LogCaptureFixture, n: int) -> None:
    deadline = time.monotonic() + 5
    while sum(r.getMessage() == "pump node restarted" for r in caplog.records) < n:
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)
