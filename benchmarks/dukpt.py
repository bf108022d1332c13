"""AES-128 DUKPT cost: one PIN pad transaction (TerminalDukpt.next_transaction) and one host derivation
(BDK -> initial key -> intermediate keys -> PIN key, host_derive_working_key), median over 1000 runs each.
Run: .venv/bin/python benchmarks/dukpt.py [runs]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key, host_derive_working_key

# The X9.24-3-2017 supplement's test BDK and initial key ID.
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = bytes.fromhex("1234567890123456")


def timed(call: Callable[[], object], runs: int) -> list[float]:
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return sorted(times)


def report(name: str, times: list[float]) -> None:
    p95 = times[int(0.95 * len(times)) - 1]
    print(f"{name}: n={len(times)} median={statistics.median(times) * 1e6:.1f} us "
          f"p95={p95 * 1e6:.1f} us max={times[-1] * 1e6:.1f} us")


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    device = TerminalDukpt(derive_initial_key(BDK, IKID), IKID)
    device.next_transaction()                                    # warm-up
    report("dukpt_aes128 TerminalDukpt.next_transaction", timed(device.next_transaction, runs))

    ksns: list[bytes] = []
    for _ in range(runs):                                        # the KSNs a device would send, in order
        ksns.append(device.next_transaction()[0])
    pending = iter(ksns)
    report("dukpt_aes128 host_derive_working_key (pin_encryption)",
           timed(lambda: host_derive_working_key(BDK, next(pending), "pin_encryption"), runs))
    # Counters near 2000 have ~5 one-bits; a worst-case KSN has 16 (17 AES operations more).
    worst = IKID + (0xFFFF0000).to_bytes(4, "big")
    report("dukpt_aes128 host_derive_working_key (16 one-bits)",
           timed(lambda: host_derive_working_key(BDK, worst, "pin_encryption"), runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
