"""Time one SELECT round trip through pyscard -> pcscd -> vpcd -> bridge -> VirtualCardServer -> FleetCard."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.cardreader.pcsc import PcscReader
from hostsim.cards import FLEET_AID, FleetCard
from hostsim.pcscd import PcscDaemon
from hostsim.vpcd import VirtualCardServer

ROUNDS = 200
SELECT = bytes.fromhex("00A4040008") + FLEET_AID + b"\x00"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="forecourt-bench-") as state, VirtualCardServer() as server, \
            PcscDaemon(Path(state), server.port) as daemon:
        server.insert(FleetCard("7083000000000000000", "2712", "BENCH"))
        reader = PcscReader(daemon.reader_name)
        if not reader.wait_for_card(5):
            print("error: the virtual card did not appear in the reader", file=sys.stderr)
            return 1
        reader.connect()
        reader.transmit(SELECT)                      # warm-up
        before = server.apdu_count
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            reader.transmit(SELECT)
            times.append(time.perf_counter() - started)
        reader.disconnect()
        reader.close()
        times.sort()
        p95 = times[int(0.95 * len(times)) - 1]
        print(f"apdu_roundtrip SELECT via pcscd/vpcd: n={server.apdu_count - before} "
              f"median={statistics.median(times) * 1e6:.0f} us p95={p95 * 1e6:.0f} us "
              f"max={times[-1] * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
