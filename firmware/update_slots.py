"""Where the terminal's software versions live on disk, and which one runs (docs/updates.md).

state_dir/software/<version>/ holds a staged release (its files and release.json: version and health
check); state_dir/software/current is a symlink to the version that runs, switched atomically (a new
link renamed over the old one). state_dir/software/update.json says what the updater is doing: the version
being tried and the one to return to, the versions that failed here (never tried again) and the reports
not yet sent. No current link: the version the terminal was installed with (FACTORY).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.bundle import Bundle, Health
from contracts.errors import ConfigError
from firmware.keyfile import sync_dir

__all__ = ["FACTORY", "Slots", "UpdateState"]


def _factory() -> str:
    try:
        return importlib.metadata.version("forecourt")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


FACTORY = _factory()
RELEASE_FILE = "release.json"


@dataclass
class UpdateState:
    trying: str | None = None        # installed, not yet healthy
    previous: str | None = None      # what runs again when the one tried fails
    rollout: int | None = None       # the rollout the version tried came from
    failed: list[str] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)   # UPDATE_REPORTs not yet published


class Slots:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "software"
        self.root.mkdir(parents=True, exist_ok=True)
        self.current = self.root / "current"
        self.state_file = self.root / "update.json"

    # -- which version runs --------------------------------------------------------------------------
    def running(self) -> str:
        try:
            return os.readlink(self.current)
        except FileNotFoundError:
            return FACTORY

    def point_to(self, version: str) -> None:
        """Make `version` the one that runs (FACTORY: no link), atomically."""
        if version == FACTORY:
            self.current.unlink(missing_ok=True)
        else:
            tmp = self.root / ".current.new"
            tmp.unlink(missing_ok=True)
            os.symlink(version, tmp)
            os.replace(tmp, self.current)
        sync_dir(self.root)

    # -- staged releases ------------------------------------------------------------------------------
    def staged(self, version: str) -> Path | None:
        path = self.root / version
        return path if (path / RELEASE_FILE).is_file() else None

    def stage(self, bundle: Bundle) -> Path:
        """Write a checked bundle's files to software/<version>/ (complete or absent: made aside, renamed)."""
        final = self.root / bundle.version
        tmp = self.root / f".{bundle.version}.staging"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, content in bundle.files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        release = {"version": bundle.version, "health": {"command": list(bundle.health.command),
                                                         "deadline_s": bundle.health.deadline_s}}
        (tmp / RELEASE_FILE).write_text(json.dumps(release))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        sync_dir(self.root)
        return final

    def health(self, version: str) -> Health:
        path = self.root / version / RELEASE_FILE
        try:
            doc = json.loads(path.read_text())
            return Health(tuple(doc["health"]["command"]), int(doc["health"]["deadline_s"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: release description unreadable", key="software") from exc

    def prune(self, keep: set[str]) -> list[str]:
        """Remove the staged versions not in keep (what runs, and what it would go back to), and staging
        left by a crash; returns the versions removed. Downloads in progress (.part) stay."""
        removed = []
        for path in self.root.iterdir():
            if path.is_symlink() or not path.is_dir():
                continue
            if path.name.startswith(".") or path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return sorted(removed)

    def partial(self, version: str) -> Path:
        """The download in progress of a version (kept across restarts: the download resumes)."""
        return self.root / f"{version}.part"

    # -- what the updater is doing --------------------------------------------------------------------
    def load(self) -> UpdateState:
        try:
            doc: Mapping[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return UpdateState()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.state_file}: unreadable ({exc})", key="software") from exc
        return UpdateState(**{k: v for k, v in doc.items() if k in UpdateState.__dataclass_fields__})

    def save(self, state: UpdateState) -> None:
        # a name of its own per writer: two saves at once never share (or remove) one temporary file
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)
        sync_dir(self.root)
