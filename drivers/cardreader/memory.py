"""An in-process card reader over a simulated card object, for unit tests of card kernels."""

from __future__ import annotations

import threading
from typing import Protocol

from contracts.errors import CardRemoved
from drivers.url import DeviceUrl

__all__ = ["MemoryReader", "SimulatedCard", "open_memory_reader"]


class SimulatedCard(Protocol):
    atr: bytes

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...
    def apdu(self, command: bytes) -> bytes: ...


class MemoryReader:
    """Same interface as PcscReader; insert()/remove() play the cardholder."""

    def __init__(self, card: SimulatedCard | None = None) -> None:
        self._card = card
        self._changed = threading.Condition()
        self._generation = 0          # bumps on every insert/remove, so a stale connection notices
        self._connected: int | None = None

    @property
    def card(self) -> SimulatedCard | None:
        return self._card

    def insert(self, card: SimulatedCard) -> None:
        with self._changed:
            self._card = card
            self._generation += 1
            self._changed.notify_all()

    def remove(self) -> None:
        with self._changed:
            self._card = None
            self._generation += 1
            self._changed.notify_all()

    def card_present(self) -> bool:
        return self._card is not None

    def wait_for_card(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._card is not None, timeout=timeout)

    def wait_for_removal(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._card is None, timeout=timeout)

    def connect(self) -> bytes:
        with self._changed:
            card = self._card
            if card is None:
                raise CardRemoved("no card in the reader", reader="memory")
            card.power_on()
            self._connected = self._generation
            return bytes(card.atr)

    def _send(self, apdu: bytes) -> bytes:
        with self._changed:
            card = self._card
            if card is None or self._connected != self._generation:
                self._connected = None
                raise CardRemoved("card removed", reader="memory", header=apdu[:4].hex())
        return bytes(card.apdu(bytes(apdu)))

    def transmit(self, apdu: bytes) -> bytes:
        from drivers.cardreader import complete_response
        return complete_response(self._send, bytes(apdu))

    def disconnect(self) -> None:
        with self._changed:
            if self._card is not None and self._connected == self._generation:
                self._card.power_off()
            self._connected = None


def open_memory_reader(url: DeviceUrl) -> MemoryReader:
    """memory://: an empty in-process reader; tests insert() simulated cards."""
    return MemoryReader()
