"""A DART pump's state changes: one table, each row with the clause it follows. The simulator runs it; the
tests read it row by row. An event with no row for the pump's state is refused: the pump ignores it and
its state stays (PI 2.1.3 lists, for each status, the commands it takes).

Clauses: "PI 2.1.3" is Protocol Specification Dart Pump Interface rev. 2.11, section 2.1.3 "Command and
status flow"; "PI 2.1.2" its status list (status 8 SUSPENDED is optional); "real" marks what frames
from real Wayne pumps show, with the source in tests/vectors/dart/README.md.
"""

from __future__ import annotations

from . import dart

__all__ = ["EVENTS", "TABLE", "next_state"]

NP, RS, AU, FI = dart.ST_NOT_PROGRAMMED, dart.ST_RESET, dart.ST_AUTHORIZED, dart.ST_FILLING
FC, MX, OFF, SU = dart.ST_FILLING_COMPLETED, dart.ST_MAX_REACHED, dart.ST_SWITCHED_OFF, dart.ST_SUSPENDED

# prices: a CD5 the pump takes; reset/authorize/stop/switch_off/suspend/resume: CD1 commands;
# flow: the nozzle is out on an allowed nozzle of an authorized pump; nozzle_in: hung up; max: preset reached
EVENTS = ("prices", "reset", "authorize", "stop", "switch_off", "suspend", "resume", "flow", "nozzle_in",
          "max")

TABLE: dict[tuple[int, str], tuple[int, str]] = {
    (NP, "prices"): (FC, "PI 2.1.3: prices program the pump, which reports FILLING COMPLETE; real: CD5 gives "
                         + "DC1 5 (intelipump docs/real-wayne-price-programming-review.md)"),
    (RS, "prices"): (RS, "PI 2.1.3: prices may change while no filling runs"),
    (FC, "prices"): (FC, "PI 2.1.3 (ex. 4.3): prices may change after a filling; real: re-price from 5"),
    (MX, "prices"): (MX, "PI 2.1.3: prices may change while no filling runs"),
    (OFF, "prices"): (OFF, "PI 2.1.3: prices may change while no filling runs"),
    (RS, "reset"): (RS, "PI 2.1.3: RESET in RESET is harmless"),
    (FC, "reset"): (RS, "PI 2.1.3: RESET ends a completed filling"),
    (MX, "reset"): (RS, "PI 2.1.3: RESET ends a filling that reached its preset"),
    (OFF, "reset"): (RS, "PI 2.1.3: RESET takes a switched-off pump back"),
    (RS, "authorize"): (AU, "PI 2.1.3: AUTHORIZE only from RESET"),
    (RS, "stop"): (FC, "PI 2.1.3: STOP in RESET gives FILLING COMPLETE"),
    (AU, "stop"): (FC, "PI 2.1.3: STOP ends an authorization"),
    (FI, "stop"): (FC, "PI 2.1.3: STOP ends a filling"),
    (SU, "stop"): (FC, "PI 2.1.3: STOP ends a suspended filling"),
    (MX, "stop"): (FC, "PI 2.1.3: STOP in MAX REACHED gives FILLING COMPLETE"),
    (OFF, "stop"): (FC, "PI 2.1.3: STOP in SWITCHED OFF gives FILLING COMPLETE"),
    (AU, "flow"): (FI, "PI 2.1.3: the nozzle out on an allowed nozzle starts the filling"),
    (FI, "nozzle_in"): (FC, "PI 2.1.3: hanging up ends the filling"),
    (SU, "nozzle_in"): (FC, "PI 2.1.3: hanging up ends the suspended filling"),
    (MX, "nozzle_in"): (FC, "PI 2.1.3: hanging up in MAX REACHED gives FILLING COMPLETE"),
    (FI, "max"): (MX, "PI 2.1.3: the preset volume or amount is reached"),
    (FI, "suspend"): (SU, "PI 2.1.2: SUSPEND pauses the filling; status 8 SUSPENDED (optional)"),
    (SU, "resume"): (FI, "PI 2.1.2: RESUME continues the suspended filling"),
    **{(st, "switch_off"): (OFF, "PI 2.1.3: SWITCH OFF in any state")
       for st in (NP, RS, AU, FI, FC, MX, OFF, SU)},
}


def next_state(state: int, event: str) -> int | None:
    """The state after event, or None when the pump refuses it (and stays where it is)."""
    row = TABLE.get((state, event))
    return row[0] if row is not None else None
