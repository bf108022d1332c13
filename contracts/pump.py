"""The pump-controller interface the sale flow drives; each dispenser protocol implements it.

Units everywhere: volume in centilitres (0.01 L), money in minor units (cents), unit price in
thousandths of the currency per litre. Pumps are numbered 1..32 on a line.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PumpController", "PumpState", "PumpStatus", "PumpTotals"]


class PumpState(enum.Enum):
    OFFLINE = "offline"
    NOT_PROGRAMMED = "not_programmed"
    RESET = "reset"
    AUTHORIZED = "authorized"
    FILLING = "filling"
    FILLING_COMPLETED = "filling_completed"
    MAX_REACHED = "max_reached"
    SWITCHED_OFF = "switched_off"

    @property
    def finished(self) -> bool:
        """The filling is over and its figures are final."""
        return self in (PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED)


@dataclass(frozen=True)
class PumpStatus:
    pump: int
    state: PumpState
    nozzle: int = 0            # selected nozzle, 0 when none
    nozzle_out: bool = False
    volume_cl: int = 0         # of the current or last filling
    amount_cents: int = 0
    price_milli: int = 0       # unit price of the selected nozzle
    seq: int = 0               # grows with every status the controller receives from this pump


@dataclass(frozen=True)
class PumpTotals:
    pump: int
    nozzle: int
    volume_cl: int
    amount_cents: int


class PumpController(Protocol):
    """What the sale flow needs from a forecourt line. Methods are thread-safe."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def status(self, pump: int) -> PumpStatus: ...

    def wait_status(self, pump: int, predicate: Callable[[PumpStatus], bool],
                    timeout: float) -> PumpStatus:
        """Block until the pump's status satisfies predicate; raise PumpTimeout after timeout."""
        ...

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        """Nozzle number -> unit price (thousandths per litre)."""
        ...

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        """Reset if needed, send allowed nozzles and the preset, then AUTHORIZE."""
        ...

    def stop(self, pump: int) -> None: ...

    def suspend(self, pump: int) -> None:
        """Pause the flow of an authorized or filling pump."""
        ...

    def resume(self, pump: int) -> None: ...

    def reset(self, pump: int) -> None: ...

    def totals(self, pump: int, nozzle: int) -> PumpTotals: ...
