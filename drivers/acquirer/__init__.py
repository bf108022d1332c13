"""TCP link to the card acquirer: 2-byte length-prefixed ISO 8583 frames."""

from typing import Any

from drivers.acquirer.tcp import MAX_FRAME, AcquirerLink

__all__ = ["MAX_FRAME", "AcquirerLink", "open_acquirer"]


def open_acquirer(url: str, **options: Any) -> AcquirerLink:
    """tcp://host:port; options (connect_timeout, response_timeout, max_frame) go to AcquirerLink."""
    from drivers.devices import open_device

    link: AcquirerLink = open_device("acquirer", url, **options)
    return link
