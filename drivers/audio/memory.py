"""A speaker that records what it was asked to say: the simulated backend for tests and the simulator."""

from __future__ import annotations

import threading

from drivers.url import DeviceUrl

__all__ = ["MemorySpeaker", "open_memory_speaker"]


class MemorySpeaker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: list[tuple[str, str]] = []
        self.interrupts = 0

    def say(self, text: str, language: str, *, interrupt: bool = True) -> None:
        with self._lock:
            self.interrupts += interrupt
            self._said.append((text, language))

    @property
    def said(self) -> list[tuple[str, str]]:
        """(text, language) of every utterance, oldest first."""
        with self._lock:
            return list(self._said)

    def texts(self) -> list[str]:
        return [text for text, _ in self.said]

    def close(self) -> None:
        pass


def open_memory_speaker(url: DeviceUrl) -> MemorySpeaker:
    return MemorySpeaker()
