"""The asyncio face of the DART controller, against the pump simulator on a real pty (a simulated customer
fills, so the test skips on a bench line)."""

from __future__ import annotations

import asyncio

from contracts.pump import PumpState
from drivers.pump import open_pump_controller
from drivers.pump.aio import AsyncPumps
from drivers.pump.simulator import SimPump
from tests.conftest import PumpLine


def test_status_stream_follows_an_async_sale(pump_line: PumpLine, customer: SimPump) -> None:
    p = pump_line.pump

    async def sale(pumps: AsyncPumps) -> list[PumpState]:
        seen: list[PumpState] = []
        await pumps.set_prices(p, {1: 1659, 2: 1789})
        await pumps.authorize(p, nozzles=[1], volume_cl=500)
        customer.lift(1)
        customer.dispense(2000, wait=False)
        async for st in pumps.status_stream(p):
            seen.append(st.state)
            if st.state.finished:
                assert st.volume_cl == 500 and st.amount_cents == (500 * 1659 + 500) // 1000
                break
        totals = await pumps.totals(p, 1)
        assert totals.volume_cl == 500
        return seen

    with open_pump_controller(pump_line.url, pump_line.pumps, reply_timeout=0.2) as controller:
        controller.wait_status(p, lambda s: s.state is not PumpState.OFFLINE, 5)
        seen = asyncio.run(asyncio.wait_for(sale(AsyncPumps(controller)), 20))
    assert PumpState.FILLING in seen and seen[-1] is PumpState.MAX_REACHED
