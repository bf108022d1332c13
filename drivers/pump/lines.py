"""Several pump lines as one PumpController: each pump's calls go to the line that serves it (a DART line
for some pumps, pulser dispensers on their own lines for others; docs/pulser.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from contracts.errors import PumpError
from contracts.pump import PumpController, PumpStatus, PumpTotals

__all__ = ["PumpLines"]


class PumpLines:
    def __init__(self, lines: Mapping[int, PumpController]) -> None:
        self._lines = dict(lines)

    def _line(self, pump: int) -> PumpController:
        line = self._lines.get(pump)
        if line is None:
            raise PumpError("pump not configured on any line", pump=pump)
        return line

    def _distinct(self) -> list[PumpController]:
        seen: dict[int, PumpController] = {}
        for line in self._lines.values():
            seen.setdefault(id(line), line)
        return list(seen.values())

    def lines(self) -> list[PumpController]:
        """Every line once."""
        return self._distinct()

    def start(self) -> None:
        for line in self._distinct():
            line.start()

    def close(self) -> None:
        for line in self._distinct():
            line.close()

    def status(self, pump: int) -> PumpStatus:
        return self._line(pump).status(pump)

    def wait_status(self, pump: int, predicate: Callable[[PumpStatus], bool], timeout: float) -> PumpStatus:
        return self._line(pump).wait_status(pump, predicate, timeout)

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        self._line(pump).set_prices(pump, prices)

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        self._line(pump).authorize(pump, nozzles=nozzles, volume_cl=volume_cl, amount_cents=amount_cents)

    def stop(self, pump: int) -> None:
        self._line(pump).stop(pump)

    def suspend(self, pump: int) -> None:
        self._line(pump).suspend(pump)

    def resume(self, pump: int) -> None:
        self._line(pump).resume(pump)

    def reset(self, pump: int) -> None:
        self._line(pump).reset(pump)

    def totals(self, pump: int, nozzle: int) -> PumpTotals:
        return self._line(pump).totals(pump, nozzle)
