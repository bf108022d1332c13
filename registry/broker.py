"""Mosquitto configuration for the registry's broker, written by the project (never hand-edited)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["broker_config"]


def broker_config(port: int, *, bind: str = "127.0.0.1", data_dir: Path | None = None,
                  password_file: Path | None = None, user: str | None = None) -> str:
    """A mosquitto 2.x config: one MQTT listener on bind:port, no persistence unless data_dir is given.

    Started as root, mosquitto drops to `user` (its own default is the user "mosquitto", who cannot write
    a data directory someone else made); started as anyone else it runs as that user and ignores this.
    """
    lines = [
        "# written by forecourt broker-config",
        "per_listener_settings false",
        f"listener {port} {bind}",
        "protocol mqtt",
        "max_queued_messages 10000",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
    ]
    if user is not None:
        lines += [f"user {user}"]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines += ["allow_anonymous true"]
    if data_dir is not None:
        lines += ["persistence true", f"persistence_location {data_dir}/", "autosave_interval 30"]
    else:
        lines += ["persistence false"]
    return "\n".join(lines) + "\n"
