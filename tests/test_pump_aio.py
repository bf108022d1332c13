"""The asyncio face of the DART controller, against the pump simulator on a real pty."""

from __future__ import annotations

import asyncio

from contracts.pump import PumpState
from drivers.pump import open_pump_controller
from drivers.pump.aio import AsyncPumps
from drivers.pump.sim_line import DartLineSimulator
from drivers.pump.simulator import SimPump


def test_status_stream_follows_an_async_sale() -> None:
    async def sale(pumps: AsyncPumps, sim: DartLineSimulator) -> list[PumpState]:
        seen: list[PumpState] = []
        await pumps.set_prices(1, {1: 1659, 2: 1789})
        await pumps.authorize(1, nozzles=[1], volume_cl=500)
        sim.pump(1).lift(1)
        sim.pump(1).dispense(2000, wait=False)
        async for st in pumps.status_stream(1):
            seen.append(st.state)
            if st.state.finished:
                assert st.volume_cl == 500 and st.amount_cents == (500 * 1659 + 500) // 1000
                break
        totals = await pumps.totals(1, 1)
        assert totals.volume_cl == 500
        return seen

    with DartLineSimulator([SimPump(1, flow_cl_per_s=2000)]) as sim, open_pump_controller(
            sim.port, [1], reply_timeout=0.2) as controller:
        controller.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5)
        seen = asyncio.run(asyncio.wait_for(sale(AsyncPumps(controller), sim), 20))
    assert PumpState.FILLING in seen and seen[-1] is PumpState.MAX_REACHED
