"""The states of one sale and the moves between them, as data; what a restart does in each state.

    created -> authorizing -> approved -> pump_authorized -> completed
       |            |            |
       +------------+--> declined +--> completed (never released: nothing dispensed)

Every move is journaled before the terminal acts on it, so the state after a crash says what may have
happened outside: "authorizing" means the host may have approved (and hold money), "pump_authorized"
means fuel may have flowed. Before "completed", the settled figures are journaled in the open state
(charged_cents set) and only then booked by the program (a bank 0220): a restart books and completes
with those figures, never with figures read again from the pump. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from contracts.errors import JournalError

__all__ = ["OPEN_STATES", "TRANSITIONS", "Recovery", "SaleState", "check_move", "recovery", "write_name"]


class SaleState(enum.StrEnum):
    CREATED = "created"
    AUTHORIZING = "authorizing"
    DECLINED = "declined"
    APPROVED = "approved"
    PUMP_AUTHORIZED = "pump_authorized"
    COMPLETED = "completed"


S = SaleState

# state -> the states it may move to; a move to the same state only sets fields (a flag, a mark)
TRANSITIONS: dict[SaleState, frozenset[SaleState]] = {
    S.CREATED: frozenset({S.AUTHORIZING, S.DECLINED}),
    S.AUTHORIZING: frozenset({S.APPROVED, S.DECLINED}),
    S.APPROVED: frozenset({S.PUMP_AUTHORIZED, S.COMPLETED}),
    S.PUMP_AUTHORIZED: frozenset({S.COMPLETED}),
    S.DECLINED: frozenset(),
    S.COMPLETED: frozenset(),
}

# the pump may hold fuel of these sales that is not settled yet
OPEN_STATES = (S.APPROVED, S.PUMP_AUTHORIZED)


def check_move(current: SaleState, new: SaleState) -> None:
    """Raise JournalError for a move the machine does not have.

    >>> check_move(SaleState.APPROVED, SaleState.PUMP_AUTHORIZED)
    >>> check_move(SaleState.COMPLETED, SaleState.APPROVED)
    Traceback (most recent call last):
    ...
    contracts.errors.JournalError: no such move (from=completed to=approved)
    """
    if new is not current and new not in TRANSITIONS[current]:
        raise JournalError("no such move", **{"from": current.value, "to": new.value})


class Recovery(enum.Enum):
    """What a restart does with a sale found in a state."""
    NOTHING = "nothing"                    # declined or completed: closed
    PROGRAM = "program"                    # created/authorizing: the program undoes what may be held
    SETTLE_UNRELEASED = "settle_unreleased"  # approved, pump never released: complete with nothing
    PUMP = "pump"                          # released: follow the pump or settle from its figures


def recovery(state: SaleState) -> Recovery:
    """The restart's action for a sale in state.

    >>> recovery(SaleState.AUTHORIZING)
    <Recovery.PROGRAM: 'program'>
    """
    if state in (S.CREATED, S.AUTHORIZING):
        return Recovery.PROGRAM
    if state is S.APPROVED:
        return Recovery.SETTLE_UNRELEASED
    if state is S.PUMP_AUTHORIZED:
        return Recovery.PUMP
    return Recovery.NOTHING


def write_name(state: SaleState, fields: Mapping[str, Any]) -> str:
    """The name of a journal write, as crash points call it: the state it moves the sale to, or "figures"
    for the write of the settled figures (charged_cents) in the open state.

    >>> write_name(SaleState.PUMP_AUTHORIZED, {"charged_cents": 0})
    'figures'
    >>> write_name(SaleState.COMPLETED, {"charged_cents": 0})
    'completed'
    """
    if "charged_cents" in fields and state is not SaleState.COMPLETED:
        return "figures"
    return state.value
