"""The `forecourt` command.

Exit codes: 0 success; 1 the run failed (a scenario's check, a crash of a service); 2 usage or
configuration error; 3 something the machine lacks (mosquitto, pcscd, a free port); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.errors import CardReaderError, ConfigError, ForecourtError, MissingComponent

if TYPE_CHECKING:
    from drivers.mqtt import TlsFiles
    from firmware.config import TerminalConfig

__all__ = ["EXIT_ENVIRONMENT", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = "exit codes: 0 ok, 1 run failed, 2 usage or configuration error, 3 missing system component"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_terminal(args: argparse.Namespace) -> int:
    from firmware.config import load_config
    from firmware.logs import setup_logging
    from firmware.terminal import run_terminal

    setup_logging(args.log_level, name="terminal")
    _under_systemd()
    cfg = load_config(_path(args.config, "--config"))
    _check_devices(cfg)
    if args.outputs_off:
        from firmware.terminal.hardware import outputs_off

        print("outputs at their safe level: " + (", ".join(f"GPIO{n}" for n in outputs_off(cfg)) or "none"))
        return EXIT_OK
    run_terminal(cfg, _stop_on_signals())
    return EXIT_OK


def _under_systemd() -> None:
    """journald gets each line's priority (<N> prefixes, only when stderr is its stream); a process the
    watchdog aborts leaves every thread's stack in the journal."""
    import faulthandler

    from drivers.systemd.journal import prefix_priorities

    prefix_priorities()
    try:
        faulthandler.enable()
    except (OSError, ValueError):        # stderr is not a file (captured, in tests)
        pass


def _path(text: str, option: str) -> Path:
    """A file or directory named on the command line; ConfigError for one no system call would take."""
    if not text or any(ord(c) < 0x20 for c in text):
        raise ConfigError(f"{option} must be a path without control characters", key=option)
    return Path(text)


def _directory(text: str, option: str) -> Path:
    path = _path(text, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create the directory ({exc.strerror})",
                          key=option) from exc
    return path


def _broker(text: str, option: str) -> tuple[str, int]:
    """host:port of an MQTT broker (":port" is this machine)."""
    from drivers.url import parse_url

    mqtt = text if not text.startswith(":") else "127.0.0.1" + text
    host, port = parse_url(f"tcp://{mqtt}", key=option).address()
    if not host or any(c.isspace() or c in "/?" for c in host) or not 1 <= port <= 65535:
        raise ConfigError(f"{option} must be host:port with a port 1..65535", key=option)
    return host, port


def _port(text: str) -> int:
    """argparse type of a TCP port: 1..65535."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, not {text!r}")
    return int(text)


def _check_devices(cfg: TerminalConfig) -> None:
    """Each device URL names a backend the terminal has (drivers.devices), before anything is opened."""
    from drivers.devices import BACKENDS, CONFIG_KEYS
    from drivers.url import parse_url

    bank = {"acquirer": cfg.bank.acquirer, "magstripe": cfg.bank.magstripe}
    for kind, key in CONFIG_KEYS.items():
        url = bank[kind] if kind in bank else getattr(cfg.devices, kind)
        if (kind in bank or kind == "gpio") and not url:
            continue                              # bank cards off, no magnetic stripe head, no GPIO
        scheme = parse_url(url, key=key).scheme
        if scheme not in BACKENDS[kind]:
            known = ", ".join(f"{s}://" if s else "a device path" for s in sorted(BACKENDS[kind]))
            raise ConfigError(f"{key} must be one of {known}", key=key)


LEVELS = "DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)"


def _level(text: str) -> str:
    """argparse type of a logging level name."""
    if text.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(f"log level must be {LEVELS.split(' (')[0]}")
    return text.upper()


def _seconds(text: str) -> float:
    """A positive number of seconds, at most a day."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 86400:
        raise argparse.ArgumentTypeError("seconds must be a number from 0.1 to 86400")
    return value


def cmd_registry(args: argparse.Namespace) -> int:
    from firmware.logs import setup_logging
    from registry.db import database_url
    from registry.server import Registry

    database_url(args.db, key="--db")          # refused here, before a log line or a file is made
    host, port = _broker(args.mqtt, "--mqtt")
    tls = _registry_tls(args.tls_dir)
    seed = _path(args.seed, "--seed") if args.seed else None
    setup_logging(args.log_level, name="registry")
    _under_systemd()
    state = _directory(args.state_dir, "--state-dir")
    reg = Registry(args.db, state, host, port, seed, _path(args.kek, "--kek") if args.kek else None,
                   tls=tls, ingest_only=args.ingest_only, worker=args.worker,
                   stop_list_poll=args.stop_list_poll)
    reg.run(_stop_on_signals())
    return EXIT_OK


def _registry_tls(text: str | None) -> TlsFiles | None:
    """The registry's certificate in an authority directory (forecourt registry pki init)."""
    from drivers.mqtt import TlsFiles

    if text is None:
        return None
    tls_dir = _path(text, "--tls-dir")
    files = TlsFiles(tls_dir / "ca.pem", tls_dir / "registry.pem", tls_dir / "registry.key")
    for path in (files.ca, files.cert, files.key):
        if not path.is_file():
            raise ConfigError(f"--tls-dir {tls_dir}: no {path.name} (forecourt registry pki init --dir DIR)",
                              key="--tls-dir")
    return files


def _owner(directory: Path) -> str | None:
    """The user owning a data directory, who can write it; None when it does not exist yet."""
    import pwd

    try:
        return pwd.getpwuid(directory.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


def cmd_broker_config(args: argparse.Namespace) -> int:
    from registry.broker import broker_config, write_acl

    bind, _ = _broker(f"{args.bind}:{args.port}", "--bind")
    data_dir = _path(args.data_dir, "--data-dir") if args.data_dir else None
    tls_dir = _path(args.tls_dir, "--tls-dir") if args.tls_dir else None
    if tls_dir is not None and not (tls_dir / "broker.key").is_file():
        raise ConfigError(f"--tls-dir {tls_dir}: no authority there (forecourt registry pki init --dir DIR)",
                          key="--tls-dir")
    owned = data_dir if data_dir is not None else tls_dir      # mosquitto drops root before reading its key
    user = args.user or (_owner(owned) if owned is not None else None)
    text = broker_config(args.port, bind=bind, data_dir=data_dir, user=user, tls_dir=tls_dir)
    if tls_dir is not None:
        write_acl(tls_dir)
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    output = _path(args.output, "--output")
    try:
        output.write_text(text)
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write ({exc.strerror})", key="--output") from exc
    return EXIT_OK


def _interrupt_on_terminate() -> None:
    """SIGTERM and SIGHUP stop the simulator like Ctrl+C does, so it stops everything it started."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def cmd_sim(args: argparse.Namespace) -> int:
    from hostsim.scenarios import SCENARIOS

    if args.list_scenarios:
        for name in SCENARIOS:
            print(name)
        return EXIT_OK
    if args.scenario is not None and args.scenario not in SCENARIOS:
        raise ConfigError(f"--scenario {args.scenario!r} is not one of: {', '.join(SCENARIOS)}",
                          key="--scenario")
    if args.state_dir is not None:
        _path(args.state_dir, "--state-dir")
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    _interrupt_on_terminate()
    try:
        if headless:
            from hostsim.headless import run_headless

            stay = _stop_on_signals() if args.stay else None
            return run_headless(args.scenario or "fleet-happy", as_json=args.json, state_dir=args.state_dir,
                                stay=stay)
        from hostsim.window import run_window

        return run_window(state_dir=args.state_dir, scenario=args.scenario)   # played in the window
    except CardReaderError as exc:
        # the simulator's reader path is pcscd + vpcd on this machine
        raise MissingComponent(f"card reader path unavailable: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forecourt", description="Self-service fuel terminal stack.",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sim", help="run the host simulator", epilog=EPILOG)
    s.add_argument("--headless", action="store_true", help="no window: run a scenario and exit")
    s.add_argument("--scenario", default=None,
                   help="scenario to run (headless: default fleet-happy; with a window: ready to play)")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object")
    s.add_argument("--list-scenarios", action="store_true", help="print the scenario names and exit")
    s.add_argument("--state-dir", default=None, help="keep the run's state here (default: a temporary dir)")
    s.add_argument("--stay", action="store_true",
                   help="headless: after the scenario, keep the simulator and its back office up till Ctrl-C")
    s.set_defaults(func=cmd_sim)

    t = sub.add_parser("terminal", help="run the terminal process, as on the device", epilog=EPILOG)
    t.add_argument("--config", required=True, help="terminal TOML configuration")
    t.add_argument("--outputs-off", action="store_true",
                   help="set every GPIO output the configuration names (pulser relays, lamps) to its safe "
                        "level and exit: what the unit runs after the terminal stopped or died")
    t.add_argument("--log-level", default="INFO", type=_level, help=LEVELS)
    t.set_defaults(func=cmd_terminal)

    registry = sub.add_parser("registry", help="the central registry: run it, manage devices, reports",
                              epilog=EPILOG)
    rsub = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    r = rsub.add_parser("run", help="run the registry service (the default: `forecourt registry --db ...`)",
                        epilog=EPILOG)
    r.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///registry.db")
    r.add_argument("--mqtt", default="127.0.0.1:1883", help="broker host:port")
    r.add_argument("--state-dir", default=".", help="where the registry keeps its keys")
    r.add_argument("--seed", default=None, help="TOML seed data to load (idempotent)")
    r.add_argument("--kek", default=None, help="key-encryption key file for the device keys, mode 0600 "
                   "(default: STATE_DIR/kek.hex; an HSM or KMS in production)")
    r.add_argument("--tls-dir", default=None, help="connect with TLS as CN=registry: ca.pem, registry.pem "
                   "and registry.key of this authority directory (forecourt registry pki init)")
    r.add_argument("--log-level", default="INFO", type=_level, help=LEVELS)
    r.add_argument("--ingest-only", action="store_true",
                   help="only store sales, sharing them with the other registry processes (docs/scaling.md)")
    r.add_argument("--worker", default="", help="this process's name, unique among the registry processes "
                   "(its MQTT client id forecourt-registry-NAME); required with --ingest-only")
    r.add_argument("--stop-list-poll", type=_seconds, default=30.0, metavar="SECONDS",
                   help="how often to look for a changed stop-list or offline limit and publish the "
                   "configurations again (default 30)")
    r.set_defaults(func=cmd_registry)

    b = sub.add_parser("broker-config", help="write a Mosquitto config for the registry", epilog=EPILOG)
    b.add_argument("--port", type=_port, default=1883, help="1..65535 (default 1883)")
    b.add_argument("--bind", default="127.0.0.1")
    b.add_argument("--data-dir", default=None, help="enable persistence in this directory")
    b.add_argument("--tls-dir", default=None,
                   help="TLS with client certificates, CRL and ACL from this authority directory "
                   "(`forecourt registry pki init`); writes DIR/broker.acl")
    b.add_argument("--user", default=None, help="user the broker runs as when started as root "
                   "(default: the owner of the data directory, else of the TLS directory)")
    b.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    b.set_defaults(func=cmd_broker_config)

    from drivers.pump.decode import add_pump_parser

    add_pump_parser(sub)
    for name in REGISTRY_COMMANDS:
        importlib.import_module(name).add_parsers(rsub)
    for name in COMMANDS:
        importlib.import_module(name).add_parsers(sub)
    return p


# Modules whose add_parsers(sub) adds `forecourt registry <command>` commands, one per line.
REGISTRY_COMMANDS: tuple[str, ...] = (
    "forecourtcli.registry_devices",
    "forecourtcli.registry_report",
    "forecourtcli.releases",
    "forecourtcli.pki",
    "forecourtcli.fleet",
    "forecourtcli.fleet_offline",
    "forecourtcli.loyalty",
    "forecourtcli.attendants",
    "forecourtcli.loyalty_rewards",
    "forecourtcli.vouchers",
    "forecourtcli.prepaid",
    "forecourtcli.sales",
)
# Modules whose add_parsers(sub) adds top-level `forecourt <command>` commands, one per line.
COMMANDS: tuple[str, ...] = (
    "forecourtcli.release_build",
    "forecourtcli.usb",
    "forecourtcli.provision",
    "forecourtcli.web",
    "forecourtcli.purse",         # after provision: adds `provision sam` and `registry purse-sam`
)


def _registry_default(argv: list[str]) -> list[str]:
    """`forecourt registry --db ...` (no subcommand) runs the registry, as before subcommands came."""
    if argv[:1] == ["registry"] and (len(argv) == 1 or argv[1].startswith("-")) and "-h" not in argv[1:2] \
            and "--help" not in argv[1:2]:
        return ["registry", "run", *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_registry_default(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MissingComponent as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except ForecourtError as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


