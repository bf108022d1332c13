"""TCP link to the card acquirer: 2-byte length-prefixed ISO 8583 frames."""

from drivers.acquirer.tcp import MAX_FRAME, AcquirerLink

__all__ = ["MAX_FRAME", "AcquirerLink"]
