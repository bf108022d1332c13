"""Audio output of the terminal: spoken prompts. Backends are picked by URL (drivers.devices):
espeak:// (espeak-ng through ALSA, the headphone jack) or memory:// (records utterances, for tests)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Speaker", "open_speaker"]


class Speaker(Protocol):
    def say(self, text: str, language: str, *, interrupt: bool = True) -> None:
        """Queue text in a screen language (ISO 639-1); interrupt drops what is queued or playing.
        Never blocks the caller."""
        ...

    def close(self) -> None: ...


def open_speaker(url: str) -> Speaker:
    from drivers.devices import open_device

    speaker: Speaker = open_device("audio", url, key="devices.audio")
    return speaker
