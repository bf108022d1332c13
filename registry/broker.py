"""Mosquitto configuration for the registry's broker, written by the project (never hand-edited)."""

from __future__ import annotations

from pathlib import Path

from registry.acl import acl_text

__all__ = ["ACL_NAME", "broker_config", "write_acl"]

ACL_NAME = "broker.acl"


def write_acl(tls_dir: Path) -> Path:
    """(Re)write the broker's ACL in tls_dir from the wire contract; mosquitto rereads it on SIGHUP."""
    path = tls_dir / ACL_NAME
    tmp = path.with_name(f".{ACL_NAME}.tmp")
    tmp.write_text(acl_text())
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def broker_config(port: int, *, bind: str = "127.0.0.1", data_dir: Path | None = None,
                  password_file: Path | None = None, user: str | None = None,
                  tls_dir: Path | None = None) -> str:
    """A mosquitto 2.x config: one MQTT listener on bind:port, no persistence unless data_dir is given.

    With tls_dir (a registry.pki Authority directory) the listener is TLS 1.2+ with the broker's
    certificate, and only clients with a certificate of that CA, not in its CRL, may connect; the
    certificate's CN is the user name for the ACL in tls_dir/ACL_NAME (write it with write_acl).

    Started as root, mosquitto drops to `user` (its own default is the user "mosquitto", who cannot write
    a data directory someone else made); started as anyone else it runs as that user and ignores this.
    """
    lines = [
        "# written by forecourt broker-config",
        "per_listener_settings false",
        f"listener {port} {bind}",
        "protocol mqtt",
        "max_queued_messages 10000",
        # Nagle's algorithm held a publish written right after a PUBACK for the client's delayed ACK (~40 ms
        # per answer and per sale ack window); the clients (drivers.mqtt.link) set TCP_NODELAY too
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
    ]
    if user is not None:
        lines += [f"user {user}"]
    if tls_dir is not None:
        lines += [f"cafile {tls_dir / 'ca.pem'}", f"certfile {tls_dir / 'broker.pem'}",
                  f"keyfile {tls_dir / 'broker.key'}", f"crlfile {tls_dir / 'crl.pem'}",
                  "require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2",
                  "allow_anonymous false", f"acl_file {tls_dir / ACL_NAME}"]
    elif password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines += ["allow_anonymous true"]
    if data_dir is not None:
        lines += ["persistence true", f"persistence_location {data_dir}/", "autosave_interval 30"]
    else:
        lines += ["persistence false"]
    return "\n".join(lines) + "\n"
