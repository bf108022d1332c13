"""What every pulser line's URL says: the pump it serves, its K-factor, the slow-stage volume; and the
technician's calibration kept in the terminal's state directory (docs/pulser.md).

>>> from drivers.url import parse_url
>>> k_milli_of(parse_url("node:///dev/ttyAMA1?pumps=3&k=98.765"))
98765
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from drivers.url import DeviceUrl

__all__ = ["CALIBRATION", "JsonFileStore", "calibrated", "k_milli_of", "one_pump", "record_calibration",
           "slow_of"]

CALIBRATION = "pulser-calibration.json"     # in the state directory: pump -> {"k_milli", "at", "by"}


def one_pump(url: DeviceUrl, pumps: list[int] | tuple[int, ...]) -> int:
    """The one pump a pulser URL serves: its pumps= option, which must be among the terminal's pumps."""
    text = url.option("pumps", "")
    if not text.isdigit() or int(text) not in pumps:
        raise ConfigError("a pulser line serves one pump: pumps=<n>, one of devices.pumps", key=url.key)
    return int(text)


def k_milli_of(url: DeviceUrl) -> int:
    """The nominal K-factor from k= (pulses per litre, up to 3 decimals) as pulses per 1000 L."""
    k = url.number("k", 0.0)
    if not 1.0 <= k <= 100000.0:
        raise ConfigError("pulser URL needs k=<pulses per litre>, 1..100000", key=url.key)
    return round(k * 1000)


def slow_of(url: DeviceUrl) -> int:
    """The preset's slow-stage volume from slow= (centilitres, 0..10000; default 50)."""
    slow = url.number("slow", 50.0)
    if not slow.is_integer() or not 0 <= slow <= 10000:
        raise ConfigError("pulser URL slow= must be 0..10000 centilitres", key=url.key)
    return int(slow)


def _read(path: Path) -> dict[str, Any]:
    """The calibration file's content, {} when there is none; ConfigError when it is not what we write."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError("pulser calibration file unreadable", key=CALIBRATION, error=str(exc)) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError("pulser calibration file is not a table of pumps", key=CALIBRATION)
    return data


def calibrated(state_dir: Path | None, pump: int, nominal: int) -> int:
    """The K-factor a technician calibrated for this pump, else the URL's nominal one."""
    if state_dir is None:
        return nominal
    entry = _read(state_dir / CALIBRATION).get(str(pump))
    if entry is None:
        return nominal
    k = entry.get("k_milli")
    if not isinstance(k, int) or not 1000 <= k <= 100_000_000:
        raise ConfigError("pulser calibration holds a bad K-factor", key=CALIBRATION, pump=pump)
    return k


def record_calibration(state_dir: Path, pump: int, k_milli: int, *, at: str, by: str) -> dict[str, Any]:
    """Write a pump's calibrated K-factor (kept with when and by whom); returns the file's content."""
    path = state_dir / CALIBRATION
    data = _read(path)
    entry = data.get(str(pump), {})
    old = entry.get("history", [])
    history = (list(old) if isinstance(old, list) else [])[-9:]
    if "k_milli" in entry:
        history.append({"k_milli": entry["k_milli"], "at": entry.get("at"), "by": entry.get("by")})
    data[str(pump)] = {"k_milli": k_milli, "at": at, "by": by, "history": history}
    JsonFileStore(path).save(data)
    return data


class JsonFileStore:
    """A snapshot kept in one file, replaced atomically (write, fsync, rename), so a power cut leaves the
    old snapshot or the new one, never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError("pulser state file unreadable", key=str(self.path), error=str(exc)) from exc
        return data if isinstance(data, dict) else None

    def save(self, snap: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, json.dumps(snap, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
