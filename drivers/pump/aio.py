"""asyncio face of a PumpController: a status stream per pump and awaitable commands.

The controller polls the line in its own thread; this wraps its blocking calls with asyncio.to_thread,
so an asyncio application (a forecourt controller, a web console) can drive pumps without blocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from contracts.errors import PumpTimeout
from contracts.pump import PumpController, PumpStatus, PumpTotals

__all__ = ["AsyncPumps"]


def _newer_than(seq: int) -> Callable[[PumpStatus], bool]:
    return lambda s: s.seq != seq


class AsyncPumps:
    def __init__(self, controller: PumpController) -> None:
        self.controller = controller

    async def status_stream(self, pump: int, *, idle_timeout: float = 1.0) -> AsyncIterator[PumpStatus]:
        """Yield the pump's status now and on every change (a new status received from the pump)."""
        st = self.controller.status(pump)
        yield st
        while True:
            try:
                st = await asyncio.to_thread(self.controller.wait_status, pump, _newer_than(st.seq),
                                             idle_timeout)
            except PumpTimeout:
                continue
            yield st

    async def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                        amount_cents: int | None = None) -> None:
        await asyncio.to_thread(self.controller.authorize, pump, nozzles=nozzles, volume_cl=volume_cl,
                                amount_cents=amount_cents)

    async def stop(self, pump: int) -> None:
        await asyncio.to_thread(self.controller.stop, pump)

    async def suspend(self, pump: int) -> None:
        await asyncio.to_thread(self.controller.suspend, pump)

    async def resume(self, pump: int) -> None:
        await asyncio.to_thread(self.controller.resume, pump)

    async def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        await asyncio.to_thread(self.controller.set_prices, pump, prices)

    async def totals(self, pump: int, nozzle: int) -> PumpTotals:
        return await asyncio.to_thread(self.controller.totals, pump, nozzle)
