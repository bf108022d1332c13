"""A network receipt printer on loopback: takes ESC/POS bytes per connection and decodes each job."""

from __future__ import annotations

import socket
import threading
import time

from contracts.errors import MessageError
from hostsim.escpos_decode import decode_escpos
from hostsim.panel_server import close_listener

__all__ = ["PrinterServer"]


class PrinterServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self.raw: list[bytes] = []
        self.receipts: list[str] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="printer-server", daemon=True)

    def start(self) -> PrinterServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        close_listener(self._srv)

    def wait_receipts(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.receipts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count} receipt(s) not printed within {timeout}s")
                self._cond.wait(left)
            return list(self.receipts)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if self._stopped:
                conn.close()
                return
            threading.Thread(target=self._job, args=(conn,), daemon=True).start()

    def _job(self, conn: socket.socket) -> None:
        data = bytearray()
        with conn:
            while chunk := conn.recv(65536):
                data += chunk
        if not data:
            return
        try:
            paper = decode_escpos(bytes(data))
            texts = (["\n".join(r) for r in paper.receipts]
                     + (["\n".join(paper.current)] if paper.current else []))
        except MessageError as exc:  # a garbled job is recorded, never fatal to the printer
            texts, err = [], f"{type(exc).__name__}: {exc}"
            with self._cond:
                self.errors.append(err)
        with self._cond:
            self.raw.append(bytes(data))
            self.receipts.extend(texts)
            self._cond.notify_all()
