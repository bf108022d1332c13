"""One error hierarchy for the whole stack; each error carries structured context."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CardError",
    "CardNotAccepted",
    "CardReaderError",
    "CardRemoved",
    "ConfigError",
    "ForecourtError",
    "HostError",
    "HostUnavailable",
    "HostUnreachable",
    "JournalError",
    "MessageError",
    "MissingComponent",
    "PinPadError",
    "PrinterError",
    "PumpError",
    "PumpLinkError",
    "PumpStateError",
    "PumpTimeout",
    "SaleCancelled",
    "SyncError",
]


class ForecourtError(Exception):
    """Root of every error this project raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.context = context

    def __str__(self) -> str:
        base = super().__str__()
        if not self.context:
            return base
        fields = " ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{base} ({fields})"


class ConfigError(ForecourtError, ValueError):
    """A configuration file or value is wrong; the message names the key."""


class CardError(ForecourtError):
    """Anything about a card."""


class CardNotAccepted(CardError):
    """The card has no application this terminal accepts."""


class CardRemoved(CardError):
    """The card left the reader mid-transaction."""


class CardReaderError(CardError):
    """The reader (PC/SC) failed or is missing."""


class PumpError(ForecourtError):
    """Anything about a dispenser."""


class PumpTimeout(PumpError, TimeoutError):
    """A pump did not answer in time."""


class PumpLinkError(PumpError):
    """The serial line or its framing failed."""


class PumpStateError(PumpError):
    """A command is not allowed in the pump's present state."""


class HostError(ForecourtError):
    """The authorization host (registry or acquirer) failed or refused."""


class HostUnavailable(HostError):
    """No answer from the host: offline, timed out or not connected."""


class HostUnreachable(HostUnavailable):
    """The host could not be reached at all: nothing was sent."""


class SaleCancelled(ForecourtError):
    """The cardholder cancelled (CANCEL key, no choice made, prompt timed out)."""


class SyncError(ForecourtError):
    """Store-and-forward of sales failed."""


class MessageError(ForecourtError, ValueError):
    """A wire message (MQTT payload, APDU, frame) is malformed."""


class JournalError(ForecourtError):
    """The sale journal cannot be read or written."""


class PinPadError(ForecourtError):
    """The PIN pad failed or the entry was cancelled."""


class PrinterError(ForecourtError):
    """The receipt printer failed."""


class MissingComponent(ForecourtError):
    """A system component (mosquitto, pcscd, a free port) is missing or cannot start here."""
