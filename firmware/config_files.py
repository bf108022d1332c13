"""Reading the TOML files a configuration points at (EMV parameters, keys), with errors that name them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError

__all__ = ["read_toml"]


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}", path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not UTF-8 text (byte {exc.start})", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}", path=str(path)) from exc
