"""A simulated acquirer and issuer host on loopback TCP, parsing strictly by the terminal's acquirer dialect
(contracts.iso8583_spec): a field out of its format, a field the dialect does not use or a mandatory field
missing gets a format error (30), as a real host answers; an unreadable frame gets no answer.

Frames are a 2-byte big-endian length then the message (drivers.acquirer.tcp). One thread per
connection. While pause()d the host answers nothing (the simulator window's acquirer timeout).
For a 0100 the host checks, in this order: the test's rules (timeout/drop), the card
expiry (54), the ARQC in field 55 with the issuer master key for the PAN's prefix (05 if it does not
verify), the PIN block through pin_verifier (55), then answers as the rules say: approve (00, ARPC in
tag 91), partial (10, approved amount in field 54; 51 when the 0100 does not flag partial approval as
supported), decline (05 or the given code). 0220/0221 and
0420/0421 are acknowledged with 0230/0430 and recorded in `advices`. A completion settles the amount in its
field 4, once per original pre-authorization (a repeat 0221 is acknowledged, not settled again), and only
within what was approved (else 13); a completion whose original this host never approved gets 25, a reversal
of one is acknowledged (nothing was held).
`settlements` and `releases` hold what was settled and released, by original (STAN + transmission time).

rules(request) returns a behaviour: "approve", "partial" / "partial:<amount>", "decline" /
"decline:<code>", "timeout" (never answer) or "drop" (close the connection). `requests` and `advices`
hold decoded messages for tests, without PIN data (PIN block and KSN fields).
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from contracts import iso8583_spec as spec
from contracts.errors import MessageError
from contracts.iso8583 import missing_fields
from contracts.iso8583_dialect import Dialect
from firmware import tlv
from firmware.acquirer import messages
from hostsim import emv_host_crypto as crypto

__all__ = ["AcquirerHost", "Behaviour", "PinVerifier", "Rules", "approve_all"]

log = logging.getLogger(__name__)

PinVerifier = Callable[[bytes, str, str], bool]  # (pin block, KSN hex, PAN) -> PIN correct
Behaviour = str
Rules = Callable[[dict[str, str]], Behaviour]
_REQUESTS = ("0100", "0220", "0221", "0420", "0421")
_ECHO = ("2", "3", "4", "7", "11", "12", "13", "14", "22", "23", "25", "41", "42", "49")


def approve_all(request: dict[str, str]) -> Behaviour:
    return "approve"


class AcquirerHost:
    """Start with start() or a with-block; address is (host, port) once started."""

    def __init__(self, issuer_keys: Mapping[str, bytes], pin_verifier: PinVerifier | None = None,
                 rules: Rules = approve_all, *, host: str = "127.0.0.1", port: int = 0,
                 today: Callable[[], dt.date] = dt.date.today, dialect: Dialect = spec.DIALECT) -> None:
        self.dialect = dialect
        self._pin_fields = (dialect.role("pin_block"), dialect.role("ksn"))
        self.issuer_keys = dict(issuer_keys)  # PAN prefix -> issuer master key for AC (16 bytes)
        self.pin_verifier = pin_verifier
        self.rules = rules
        self.today = today
        self.requests: list[dict[str, str]] = []
        self.wire: deque[bytes] = deque(maxlen=1000)   # the last frames as received (card data): tests only
        self.advices: list[dict[str, str]] = []
        self.decisions: list[dict[str, str]] = []  # mti, stan, code, reason
        self.approved: dict[str, int] = {}          # original key -> amount approved
        self.settlements: dict[str, dict[str, Any]] = {}   # original key -> amount, stan, rrn, fuel
        self.releases: dict[str, int] = {}          # original key -> amount released by a reversal
        self.repeats = 0                            # advices acknowledged again without a new effect
        self._bind = (host, port)
        self._lock = threading.Lock()
        self._counter = 0
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._paused_until = 0.0                     # time.monotonic() until which nothing is answered

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("host not started")
        addr = self._server.server_address
        return str(addr[0]), int(addr[1])

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self) -> AcquirerHost:
        host = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                host._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = True

        self._server = Server(self._bind, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="acquirer-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()  # joins the connection threads (block_on_close)
        if self._thread is not None:
            self._thread.join()
        self._server = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def pause(self, seconds: float) -> None:
        """Answer nothing for seconds (a host that stopped answering): every request meanwhile times out."""
        with self._lock:
            self._paused_until = time.monotonic() + seconds

    def resume(self) -> None:
        with self._lock:
            self._paused_until = 0.0

    def paused_for(self) -> float:
        """Seconds of the pause still to run; 0.0 when the host answers."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- connection --------------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            while True:
                raw = _recv_frame(conn)
                if raw is None:
                    return
                answer = self.handle(raw)
                if answer == b"drop":
                    return
                if answer:
                    conn.sendall(len(answer).to_bytes(2, "big") + answer)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)

    def handle(self, raw: bytes) -> bytes | None:
        """One request in; the response, None for "timeout" or an unreadable frame, b"drop" for "drop"."""
        with self._lock:
            self.wire.append(bytes(raw))
        try:
            doc = messages.decode(raw, self.dialect)
        except MessageError as exc:
            return self._refuse(raw, exc)
        lacking = missing_fields(doc, self.dialect)
        if lacking:
            return self._refuse(raw, MessageError("mandatory field missing", field=lacking[0]))
        kept = {k: v for k, v in doc.items() if k not in self._pin_fields}
        behaviour = self.rules(dict(kept))
        mti = doc["t"]
        with self._lock:
            (self.requests if mti == "0100" else self.advices).append(kept)
        if behaviour == "timeout":
            self._decide(doc, "--", "no answer (rules)")
            return None
        if self.paused_for():
            self._decide(doc, "--", "no answer (paused)")
            return None
        if behaviour == "drop":
            self._decide(doc, "--", "connection dropped (rules)")
            return b"drop"
        if mti == "0100":
            return self._authorize(doc, behaviour)
        if mti in ("0220", "0221", "0420", "0421"):
            code = (behaviour.partition(":")[2] or "05") if behaviour.startswith("decline") else "00"
            if code == "00":
                code = self._book(doc)
            self._decide(doc, code, "advice " + ("repeat" if mti.endswith("1") else "first"))
            return messages.encode({"t": response_mti(mti), "11": doc["11"], "39": code,
                                    **{k: doc[k] for k in ("3", "4", "7", "41", "42") if k in doc}},
                                   self.dialect)
        self._decide(doc, "12", "unsupported message type")
        return None

    def _refuse(self, raw: bytes, exc: MessageError) -> bytes | None:
        """Format error (30) for a request whose MTI and STAN can still be read; else no answer."""
        log.warning("request refused", extra={"error": str(exc)})
        try:
            doc = messages.decode(raw, self.dialect, strict=False, reads=("11",))
        except MessageError:
            doc = {}
        mti, stan = doc.get("t", ""), doc.get("11", "")
        with self._lock:
            self.decisions.append({"mti": mti, "stan": stan, "code": "30",
                                   "reason": f"format error: {exc.context.get('field', '?')}"})
        if mti not in _REQUESTS or not stan:
            return None
        return messages.encode({"t": response_mti(mti), "11": stan, "39": "30"}, self.dialect)

    def _book(self, doc: dict[str, str]) -> str:
        """Settle a completion or release a reversal, once per original; the response code."""
        key, amount = doc["90"][4:20], int(doc["4"])
        with self._lock:
            approved = self.approved.get(key)
            completion = doc["t"] in ("0220", "0221")
            if approved is None and completion:
                return "25"                             # unable to locate the original on file
            book = self.settlements if completion else self.releases
            if key in book:
                self.repeats += 1
                return "00"
            if approved is None:                        # reversal of what was never approved: nothing held
                return "00"
            if completion:
                if not 0 < amount <= approved:
                    return "13"                         # invalid amount
                self.settlements[key] = {"amount": amount, "stan": doc["11"], "rrn": doc.get("37"),
                                         "fuel": messages.parse_fuel(doc[self.dialect.role("fuel")],
                                                                     self.dialect)}
            else:
                self.releases[key] = amount
        return "00"

    def remember(self, stan: str, transmission: str, amount: int) -> None:
        """An approval this host gave before a restart (its records outlive the process, as a real host's)."""
        with self._lock:
            self.approved[stan + transmission] = amount

    @property
    def settled_total(self) -> int:
        with self._lock:
            return sum(int(s["amount"]) for s in self.settlements.values())

    # -- authorization -----------------------------------------------------------------------------
    def _authorize(self, doc: dict[str, str], behaviour: Behaviour) -> bytes:
        icc = dict(tlv.parse(bytes.fromhex(doc.get("55", ""))))
        pan, psn = _pan(doc), doc.get("23", "000")[-2:]
        code, reason, amount = self._check(doc, icc, pan, psn)
        if code == "00":
            kind, _, arg = behaviour.partition(":")
            if kind == "partial" and not self._takes_partial(doc):
                code, reason, amount = "51", "partial approval not flagged as supported", 0
            elif kind == "partial":
                amount = int(arg) if arg else int(doc["4"]) // 2
                code, reason = "10", "partial approval (rules)"
            elif kind == "decline":
                code, reason = arg or "05", "declined (rules)"
        self._decide(doc, code, reason)
        out: dict[str, Any] = {k: doc[k] for k in _ECHO if k in doc}
        out.update({"t": "0110", "39": code, "37": self._rrn()})
        if code in ("00", "10"):
            out["38"] = f"{self._counter % 1_000_000:06d}"
            with self._lock:
                self.approved[doc["11"] + doc["7"]] = amount
        if code == "10":
            currency = doc.get("49", "978")
            out["54"] = f"00{spec.AMOUNT_TYPE_APPROVED}{currency}C{amount:012d}"
        key = self._key(pan)
        if icc and key is not None and reason != "ARQC does not verify" and 0x9F26 in icc:
            try:
                resp = tlv.encode(0x91, crypto.issuer_authentication_data(key, pan, psn, icc, code))
                out["55"] = (resp + tlv.encode(0x8A, code.encode("ascii"))).hex().upper()
            except (KeyError, ValueError):
                pass
        return messages.encode(out, self.dialect)

    def _check(self, doc: dict[str, str], icc: dict[int, bytes], pan: str, psn: str) -> tuple[str, str, int]:
        amount = int(doc.get("4", "0"))
        expiry = doc.get("14") or _track_expiry(doc)
        if expiry is not None and expiry < self.today().strftime("%y%m"):
            return "54", "expired card", 0
        if doc.get("22") in spec.ICC_ENTRY_MODES:
            key = self._key(pan)
            if key is None:
                return "05", "no issuer key for this card", 0
            result = crypto.verify_arqc(key, pan, psn, icc)
            if not result.ok:
                return "05", result.reason, 0
            if icc[0x9F02].hex() != doc.get("4"):  # 9F02 is n12 BCD: its hex digits are field 4
                return "05", "ARQC amount differs from field 4", 0
        pin_block = bytes.fromhex(doc.get(self.dialect.role("pin_block"), ""))
        if (pin_block and self.pin_verifier is not None
                and not self.pin_verifier(pin_block, doc.get(self.dialect.role("ksn"), ""), pan)):
            return "55", "incorrect PIN", 0
        return "00", "approved", amount

    def _takes_partial(self, doc: dict[str, str]) -> bool:
        """The 0100 says the terminal takes a partial approval; an issuer declines rather than approve part
        of an amount for a terminal that does not say so."""
        return doc.get(self.dialect.role("additional_data")) == self.dialect.values["additional_data_preauth"]

    def _key(self, pan: str) -> bytes | None:
        best = max((p for p in self.issuer_keys if pan.startswith(p)), key=len, default=None)
        return None if best is None else self.issuer_keys[best]

    def _rrn(self) -> str:
        with self._lock:
            self._counter += 1
            return f"{self._counter:012d}"

    def _decide(self, doc: dict[str, str], code: str, reason: str) -> None:
        with self._lock:
            self.decisions.append({"mti": doc["t"], "stan": doc.get("11", ""), "code": code,
                                   "reason": reason})


def _pan(doc: dict[str, str]) -> str:
    return doc.get("2") or doc.get("35", "").partition("=")[0]


def _track_expiry(doc: dict[str, str]) -> str | None:
    track = doc.get("35")
    return track.partition("=")[2][:4] if track else None


def response_mti(mti: str) -> str:
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv_frame(conn: socket.socket) -> bytes | None:
    header = _recv_exact(conn, 2)
    if header is None:
        return None
    return _recv_exact(conn, int.from_bytes(header, "big"))
