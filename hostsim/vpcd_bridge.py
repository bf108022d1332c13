"""Relays vpcd, listening inside pcscd's private network namespace, to the card server on the host's
loopback while a card is present (why a namespace: see hostsim.pcscd)."""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import threading
from pathlib import Path

from hostsim.vpcd import CTRL_ATR, quickack, recv_frame, send_frame, set_low_latency

__all__ = ["VPCD_PORT", "VpcdBridge"]

VPCD_PORT = 0x8C7B                 # slot 0, inside the private namespace, so no clash with anything
_CLONE_NEWNET = 0x40000000


class VpcdBridge(threading.Thread):
    """Relays one vpcd slot (in pcscd's namespace) to the card server on the host's loopback, card present
    only. vpcd serves slot N on VPCD_PORT + N, so slot picks the port."""

    def __init__(self, card_port: int, netns: Path, slot: int = 0) -> None:
        super().__init__(name=f"vpcd-bridge-{slot}", daemon=True)
        self.card_port = card_port
        self.netns = netns
        self.vpcd_port = VPCD_PORT + slot
        self.stopping = threading.Event()
        self._libc = ctypes.CDLL(None, use_errno=True)

    def _vpcd_socket(self) -> socket.socket:
        """A socket in pcscd's namespace (a socket keeps the namespace it was created in)."""
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.netns, os.O_RDONLY)
        try:
            if self._libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into pcscd's network namespace failed")
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if self._libc.setns(host, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the host network namespace failed")
        finally:
            os.close(host)
            os.close(target)

    def _probe_card(self) -> socket.socket | None:
        """Connect to the card server; keep the connection only if a card answers with an ATR."""
        try:
            card = socket.create_connection(("127.0.0.1", self.card_port), timeout=1.0)
        except OSError:
            return None
        try:
            set_low_latency(card)
            send_frame(card, bytes([CTRL_ATR]))
            atr = recv_frame(card)
            if atr:
                card.settimeout(None)
                return card
        except OSError:
            pass
        card.close()
        return None

    def run(self) -> None:
        while not self.stopping.is_set():
            card = self._probe_card()
            if card is None:
                self.stopping.wait(0.01)
                continue
            vpcd: socket.socket | None = None
            try:
                vpcd = self._vpcd_socket()
                vpcd.settimeout(1.0)
                vpcd.connect(("127.0.0.1", self.vpcd_port))
                vpcd.settimeout(None)
                set_low_latency(vpcd)
            except OSError:
                if vpcd is not None:        # vpcd not listening yet: this socket is done with
                    vpcd.close()
                card.close()
                self.stopping.wait(0.1)
                continue
            try:
                self._relay(card, vpcd)
            finally:
                card.close()
                vpcd.close()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        quickack(src)
                        data = src.recv(65536)
                        if not data:
                            return
                        peer[src].sendall(data)
                    except OSError:
                        return
