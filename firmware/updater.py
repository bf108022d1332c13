"""The terminal's software updates: offer, download, check, install between sales, health check, rollback.

The registry's retained UPDATE_OFFER names a version, its size and SHA-256. The updater fetches the bundle
in pieces (UPDATE_FETCH requests answered on its update_chunk topic), appending to a partial file so a
download resumes where it stopped; checks size, digest and signature (contracts.bundle; the keys trusted
are config-keys.json's, firmware.configstore.load_config_keys) and stages it (firmware.update_slots).
Between sales (idle()) it switches the `current` link to it, marks it "trying" and asks for a restart:
the process exits with RESTART_EXIT and its supervisor (systemd Restart=, or the simulator) starts it
again. At start a version being tried runs its health check (the release's command, then "connected to
the broker and got the configuration" within its deadline): passing commits it (reported installed);
failing points `current` back to the previous version, marks the version failed here (never tried
again) and restarts (reported rolled_back). Reports are kept on disk until published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.bundle import BundleError, open_bundle
from contracts.errors import ConfigError, HostUnavailable, MessageError
from firmware.configstore import Accepted, ConfigStore, Refused
from firmware.hostlink import Link
from firmware.update_slots import FACTORY, Slots

__all__ = ["RESTART_EXIT", "Updater", "WatchedConfigs", "running_version"]

log = logging.getLogger(__name__)

RESTART_EXIT = 75          # "restart me": the supervisor starts the terminal again (docs/updates.md)
CHUNK = 256 * 1024         # the most the registry sends at once (registry.releases.MAX_CHUNK)
DOWNLOAD_TRIES = 3         # downloads whose digest differs from the offer before the release is refused


def running_version(state_dir: Path) -> str:
    """The software version the terminal runs (for heartbeats and status)."""
    return Slots(state_dir).running()


class WatchedConfigs(ConfigStore):
    """The terminal's configuration store, telling when a good configuration came from the registry in
    this run (the one already run, delivered again, counts): half of an update's health check."""

    def __init__(self, state_dir: Path, *, terminal: str) -> None:
        super().__init__(state_dir, terminal=terminal)
        self.received = threading.Event()

    def offer(self, doc: Mapping[str, Any] | bytes,
              now: dt.datetime | None = None) -> Accepted | Refused | None:
        result = super().offer(doc, now)
        if not isinstance(result, Refused):
            self.received.set()
        return result


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Updater:
    def __init__(self, state_dir: Path, link: Link, terminal: str, trusted: Mapping[str, Ed25519PublicKey], *,
                 chunk: int = CHUNK, fetch_timeout: float = 10.0, retry: float = 5.0,
                 python: str = sys.executable, event: Callable[[str, str, str], None] | None = None) -> None:
        """event(severity, code, detail): an alarm for an update rolled back or refused (HostLink.event),
        raised when its report is published."""
        self.slots, self.link, self.terminal, self.trusted = Slots(state_dir), link, terminal, trusted
        self.chunk, self.fetch_timeout, self.retry, self.python = chunk, fetch_timeout, retry, python
        self.event = event
        self.state = self.slots.load()
        self.restart_due = threading.Event()     # set: exit with RESTART_EXIT at the next idle moment
        self.staged: dict[str, Any] | None = None   # the offer whose bundle is staged, ready to install
        self._offer: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._reports_lock = threading.Lock()     # state.reports and the state file
        self._wake, self._stop = threading.Event(), threading.Event()
        self._announced: set[str] = set()
        self._digest_misses: dict[str, int] = {}   # per version, this run: a torn .part is fetched again
        self._thread = threading.Thread(target=self._download_loop, name="updater", daemon=True)
        self._fetch = protocol.topic("update_fetch", terminal=terminal)
        self._chunks = protocol.topic("update_chunk", terminal=terminal)
        link.subscribe(protocol.topic("update_offer", terminal=terminal), self._on_offer)
        link.subscribe(self._chunks, lambda *_: None)     # answers are matched by correlation data
        link.on_state(lambda up: self.flush_reports() if up else None)

    @property
    def version(self) -> str:
        return self.slots.running()

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self, ready: Callable[[], bool]) -> None:
        """Check the version being tried, if any (ready(): connected and configured), then watch offers."""
        trying = self.state.trying
        if trying is not None and self.version != trying:
            # stopped between marking it and switching `current`: it never ran; installed again later
            log.warning("update marked but never switched to; not tried", extra={"version": trying})
            self.state.trying = None
            self.slots.save(self.state)
        elif trying is not None:
            self._check_health(trying, ready)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.fetch_timeout + 1)

    def idle(self, between_sales: Callable[[], bool]) -> bool:
        """Called by the terminal's loop; True: stop now and exit with RESTART_EXIT. Never during a sale:
        between_sales() (no sale open in the journal) is asked only when there is something to do."""
        if not (self.restart_due.is_set() or self.staged is not None) or not between_sales():
            return False
        if not self.restart_due.is_set():
            with self._lock:
                offer, self.staged = self.staged, None
            if offer is not None and self.state.trying is None:
                self.install(offer)
        return self.restart_due.is_set()

    def install(self, offer: Mapping[str, Any]) -> None:
        """Switch `current` to a staged version and mark it tried: it runs after the restart."""
        version = offer["version"]
        self.state.previous, self.state.trying, self.state.rollout = self.version, version, offer["rollout"]
        self.slots.save(self.state)          # marked before the switch: a crash between tries it, or not
        self.slots.point_to(version)
        log.info("update installed; restarting to try it", extra={"version": version,
                                                                  "previous": self.state.previous})
        self.restart_due.set()

    # -- health after a restart -----------------------------------------------------------------------
    def _check_health(self, version: str, ready: Callable[[], bool]) -> None:
        try:
            health = self.slots.health(version)
        except ConfigError as exc:
            self._rollback(version, "release description unreadable")
            log.error("update health check impossible", extra={"error": str(exc)})
            return
        detail = self._run_command(version, health.command, health.deadline_s)
        if detail is not None:
            self._rollback(version, detail)
            return
        deadline = time.monotonic() + health.deadline_s

        def watch() -> None:
            while not ready():
                if self._stop.wait(0.1):
                    return
                if time.monotonic() > deadline:
                    self._rollback(version, f"no broker or configuration within {health.deadline_s} s")
                    return
            self._commit(version)

        threading.Thread(target=watch, name="update-health", daemon=True).start()

    def _run_command(self, version: str, command: tuple[str, ...], deadline_s: int) -> str | None:
        """None when the release's health command passes, else why not."""
        argv = [self.python if command[0] == "python" else command[0], *command[1:]]
        try:
            done = subprocess.run(argv, cwd=self.slots.root / version, timeout=deadline_s, check=False,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"health check ran over {deadline_s} s"
        except OSError as exc:
            return f"health check did not start ({exc.strerror})"
        return None if done.returncode == 0 else f"health check exited {done.returncode}"

    def _commit(self, version: str) -> None:
        rollout, self.state.trying = self.state.rollout, None
        self._report(version, rollout, "installed", f"healthy; previous {self.state.previous}")
        self.slots.prune(keep={version, self.state.previous or ""})
        log.info("update healthy and kept", extra={"version": version})

    def _rollback(self, version: str, detail: str) -> None:
        previous = self.state.previous or FACTORY
        self.slots.point_to(previous)
        self.slots.prune(keep={previous})
        rollout, self.state.trying = self.state.rollout, None
        if version not in self.state.failed:
            self.state.failed.append(version)
        self._keep_report(version, rollout, "rolled_back", f"{detail}; back to {previous}")
        self.restart_due.set()      # once the report is on disk: it goes from the next run, on `previous`
        log.error("update failed its health check; rolled back",
                  extra={"version": version, "previous": previous, "detail": detail})

    # -- reports --------------------------------------------------------------------------------------
    def _report(self, version: str, rollout: int | None, status: str, detail: str) -> None:
        """Kept on disk with the state, then published (again after a restart if the link was down)."""
        self._keep_report(version, rollout, status, detail)
        self.flush_reports()

    def _keep_report(self, version: str, rollout: int | None, status: str, detail: str) -> None:
        with self._reports_lock:
            if rollout is not None:
                self.state.reports.append({"terminal": self.terminal, "version": version,
                                           "rollout": rollout, "status": status, "detail": detail[:200],
                                           "at": _stamp()})
            self.slots.save(self.state)

    def flush_reports(self) -> None:
        """Publish the reports kept; none while a restart is due (they go once the next run is up)."""
        sent: list[dict[str, Any]] = []
        with self._reports_lock:
            while self.state.reports and self.link.connected.is_set() and not self.restart_due.is_set():
                doc = self.state.reports[0]
                try:
                    self.link.publish(protocol.topic("update_report", terminal=self.terminal),
                                      m.encode(doc, d.UPDATE_REPORT))
                    sent.append(doc)
                except HostUnavailable:
                    break
                except MessageError:
                    log.error("update report dropped", extra={"status": doc.get("status")})
                self.state.reports.pop(0)
                self.slots.save(self.state)
        for doc in sent:
            if self.event is not None and doc["status"] in ("rolled_back", "refused"):
                detail = f"version={doc['version']} {doc['detail']}"
                self.event("alarm", f"update_{doc['status']}", detail[:200])

    # -- offers and downloads -------------------------------------------------------------------------
    def _on_offer(self, topic: str, payload: bytes, props: Any) -> None:
        """The registry's desired version. Empty: withdrawn (rollout halted); a staged version no longer
        offered is not installed."""
        offer: dict[str, Any] | None = None
        if payload:
            try:
                offer = m.decode(payload, d.UPDATE_OFFER)
            except MessageError as exc:
                log.warning("malformed update offer dropped", extra={"error": str(exc)})
                return
            if offer["terminal"] != self.terminal:
                return
        version = offer["version"] if offer is not None else None
        if version in (self.version, self.state.trying) or version in self.state.failed:
            offer = None                   # runs it, tries it, or it failed here: nothing to fetch
        with self._lock:
            if self.staged is not None and self.staged["version"] != version:
                log.info("staged update no longer offered; not installed",
                         extra={"version": self.staged["version"]})
                self.staged = None
            self._offer = offer
        if offer is not None:
            self._wake.set()

    def _download_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry)
            self._wake.clear()
            with self._lock:
                offer = self._offer
                ready = self.staged is not None and offer is not None \
                    and self.staged["version"] == offer["version"]
            if offer is None or ready or self.state.trying is not None:
                continue
            try:
                self._download(offer)
            except HostUnavailable as exc:
                log.info("update download paused", extra={"version": offer["version"], "error": str(exc)})
            except OSError as exc:
                log.error("update download failed", extra={"version": offer["version"], "error": str(exc)})

    def _current_offer(self, version: str) -> bool:
        with self._lock:
            return self._offer is not None and self._offer["version"] == version and not self._stop.is_set()

    def _download(self, offer: Mapping[str, Any]) -> None:
        version, size = offer["version"], offer["size"]
        if self.slots.staged(version) is not None:      # checked and staged before a restart
            with self._lock:
                self.staged = dict(offer)
            return
        if version not in self._announced:
            self._announced.add(version)
            self._report(version, offer["rollout"], "downloading", f"{size} bytes")
        part = self.slots.partial(version)
        with open(part, "ab") as f:
            have = f.tell()
            while have < size:
                if not self._current_offer(version):
                    return
                req = {"terminal": self.terminal, "version": version, "offset": have,
                       "length": min(self.chunk, size - have)}
                data = self.link.request(self._fetch, m.encode(req, d.UPDATE_FETCH), self._chunks,
                                         self.fetch_timeout)
                if not data:
                    raise HostUnavailable("the registry sent no bytes", offset=have)
                f.write(data[:size - have])
                f.flush()
                os.fsync(f.fileno())        # on disk before the next piece is asked for (resume point)
                have += min(len(data), size - have)
        self._check_and_stage(offer, part)

    def _check_and_stage(self, offer: Mapping[str, Any], part: Path) -> None:
        version = offer["version"]
        data = part.read_bytes()
        part.unlink()                       # a bad download starts over; a good one is staged
        if hashlib.sha256(data).hexdigest() != offer["sha256"]:
            # a .part torn by a power cut or a piece damaged on the way: fetched again; the same
            # difference DOWNLOAD_TRIES times in a row is the registry's bundle, refused
            misses = self._digest_misses.get(version, 0) + 1
            self._digest_misses[version] = misses
            if misses < DOWNLOAD_TRIES:
                log.warning("update bundle digest differs from the offer; fetching it again",
                            extra={"version": version, "attempt": misses})
                self._wake.set()
                return
            self._refuse(offer, f"bundle digest differs from the offer ({misses} downloads)")
            return
        self._digest_misses.pop(version, None)
        try:
            bundle = open_bundle(data, self.trusted)
        except BundleError as exc:
            self._refuse(offer, str(exc))
            return
        if bundle.version != version:
            self._refuse(offer, f"bundle is version {bundle.version}, not the one offered")
            return
        self.slots.stage(bundle)
        with self._lock:
            self.staged = dict(offer)
        log.info("update staged; installed at the next moment between sales", extra={"version": version})

    def _refuse(self, offer: Mapping[str, Any], detail: str) -> None:
        if offer["version"] not in self.state.failed:
            self.state.failed.append(offer["version"])
        self._report(offer["version"], offer["rollout"], "refused", detail)
        log.error("update refused", extra={"version": offer["version"], "detail": detail})
