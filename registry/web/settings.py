"""How one back office runs: its database, the registry's state directory (its keys), cookies."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

__all__ = ["WebSettings"]


@dataclasses.dataclass(frozen=True)
class WebSettings:
    db_url: str
    # the registry's state directory: its keys (card tokens, sealed numbers) and, when there, the authority
    state_dir: Path | None = None
    tls_dir: Path | None = None                 # the fleet authority (revoking a terminal's certificate)
    secure_cookies: bool = False                # True behind HTTPS; plain loopback HTTP in the simulator
    idle: dt.timedelta = dt.timedelta(minutes=30)
    longest: dt.timedelta = dt.timedelta(hours=12)
    tries: int = 5                              # wrong passwords in a row before the lock
    lock_for: dt.timedelta = dt.timedelta(minutes=15)
    stop_list_poll: int = 30                    # what the registry polls at (said on the block page)
