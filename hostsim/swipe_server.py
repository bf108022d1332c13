"""The simulator's side of the magnetic stripe reader: swipes a card's track 2 to the terminal
(loopback TCP)."""

from __future__ import annotations

from hostsim.line_server import LineServer

__all__ = ["SwipeServer"]


class SwipeServer(LineServer):
    """Accepts one terminal connection at a time; swipe() types ";track2?" and a newline, as a HID head does.

    The terminal sends nothing back: reading its connection only notices when it hangs up.
    """

    name = "swipe"
    device = "terminal magstripe reader"

    def swipe(self, track2_content: str) -> None:
        """Send the content between the sentinels (e.g. "PAN=YYMMSSS...") as one swipe."""
        if "\n" in track2_content:
            raise ValueError("track 2 content cannot hold a newline")
        self._send_line(f";{track2_content}?".encode())
