"""A customer's card presented while an attendant works the menu (a top-up, points, movements): inserted,
tapped or swiped. An attendant's own card still in the reader is passed over until it leaves."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from contracts.errors import CardError
from contracts.track2 import Track2
from firmware.attendant.signin import CardNumber, card_of
from firmware.programs.base import CardIn, Swipe

__all__ = ["Presenter"]

log = logging.getLogger(__name__)


class Reader(Protocol):
    def wait_for_card(self, timeout: float) -> bool: ...
    def wait_for_removal(self, timeout: float) -> bool: ...
    def disconnect(self) -> None: ...


class Stripes(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None: ...


class Presenter:
    """read: the card in the reader as the programs see it (firmware.terminal.serve.card_in); skip: a card
    not to take (an attendant's); keys: the panel's key reader (CANCEL gives up); timeout: seconds."""

    def __init__(self, reader: Reader, stripes: Stripes | None, read: Callable[[Reader], CardIn | None],
                 skip: Callable[[CardNumber], bool], keys: Callable[[float], str | None], *, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reader, self.stripes, self.read, self.skip, self.keys = reader, stripes, read, skip, keys
        self.timeout, self.clock = timeout, clock

    def _swiped(self) -> CardNumber | None:
        if self.stripes is None:
            return None
        try:
            track = self.stripes.wait_swipe(0.0)
        except CardError as exc:
            log.warning("swipe unreadable", extra={"error": str(exc)})
            return None
        got = card_of(Swipe(track)) if track is not None else None
        return got if got is not None and not self.skip(got) else None

    def __call__(self) -> CardNumber | None:
        deadline = self.clock() + self.timeout
        while self.clock() < deadline:
            if self.keys(0.05) == "CANCEL":
                return None
            swiped = self._swiped()
            if swiped is not None:
                return swiped
            if not self.reader.wait_for_card(0.25):
                continue
            try:
                card = self.read(self.reader)
                got = card_of(card) if card is not None else None
            except CardError as exc:
                log.warning("presented card unreadable", extra={"error": str(exc)})
                got = None
            finally:
                try:
                    self.reader.disconnect()
                except CardError:
                    pass
            if got is not None and not self.skip(got):
                return got
            # an attendant's card, or one without a number: wait until it leaves
            while self.clock() < deadline and not self.reader.wait_for_removal(0.25):
                if self.keys(0.05) == "CANCEL":
                    return None
        return None
