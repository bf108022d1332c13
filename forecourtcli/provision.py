"""`forecourt provision init|selftest|rotate-cert|status|pulser-calibrate|tamper-clear`: the technician's
tools, run on the terminal.

init enrolls a fresh state directory with a one-time token (provisioning.enroll); selftest opens every
configured device and prints a pass/fail table; rotate-cert gets a certificate for a new device key over the
current one (provisioning.rotate); status says who the terminal is and how it stands; pulser-calibrate sets
a pulser pump's K-factor from a proving measure (provisioning.pulser); tamper-clear takes the terminal back
into service after a tamper alarm (provisioning.tamper). No key is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from contracts.errors import ConfigError

__all__ = ["add_parsers"]

EPILOG = "exit codes: 0 ok, 1 run failed (a selftest check, no answer in time, a calibration refused, a " \
         "tamper switch still tripped), 2 usage or configuration error (a refused token, a clock far " \
         "off, a refused certificate), 3 broker unreachable"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds must be above 0 and at most 3600, not {text!r}")
    return value


def _logging(args: argparse.Namespace) -> None:
    """Warnings of the libraries only when asked for: a technician reads one line per problem."""
    from firmware.logs import setup_logging

    setup_logging(args.log_level, name="provision")


TOKEN_ENV = "FORECOURT_ENROLLMENT_TOKEN"


def _token(given: str | None) -> str:
    """The token from --token -, i.e. standard input (never in `ps` or the shell's history), else from
    $FORECOURT_ENROLLMENT_TOKEN, else --token TOKEN itself."""
    if given == "-":
        return sys.stdin.readline().strip()
    if given is None:
        found = os.environ.get(TOKEN_ENV, "").strip()
        if not found:
            raise ConfigError(f"no enrollment token: --token - (read from standard input) or ${TOKEN_ENV}",
                              key="--token")
        return found
    return given


def cmd_init(args: argparse.Namespace) -> int:
    from forecourtcli.main import _broker, _path
    from provisioning.enroll import InitOptions, enroll

    _logging(args)

    host, port = _broker(args.broker, "--broker")
    done = enroll(InitOptions(state_dir=_path(args.state_dir, "--state-dir"), host=host, port=port,
                              token=_token(args.token), serial=args.serial,
                              claim_dir=_path(args.claim_dir, "--claim-dir"), device_id=args.device_id,
                              wait=args.wait))
    cert = done.certificate
    print(f"enrolled as {done.device_id} at station {done.station}")
    print(f"certificate {cert.subject}, fingerprint {cert.fingerprint}, expires {cert.not_after:%Y-%m-%d}")
    import tomllib

    has_devices = "devices" in tomllib.loads(done.config_path.read_text(encoding="utf-8"))
    print(f"configuration written: {done.config_path}; next: "
          + ("" if has_devices else "add its [devices], then ")
          + f"forecourt provision selftest --config {done.config_path}")
    return 0


def _config(args: argparse.Namespace) -> Any:
    from firmware.config import load_config
    from forecourtcli.main import _path

    _logging(args)
    return load_config(_path(args.config, "--config"))


def cmd_selftest(args: argparse.Namespace) -> int:
    from provisioning.selftest import failed, run_selftest, table

    results = run_selftest(_config(args), timeout=args.timeout)
    for line in table(results):
        print(line)
    return 1 if failed(results) else 0


def cmd_status(args: argparse.Namespace) -> int:
    from provisioning.status import collect_status, lines

    for line in lines(collect_status(_config(args), timeout=args.timeout, probe_broker=not args.offline)):
        print(line)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from provisioning.rotate import rotate_certificate

    cert = rotate_certificate(_config(args), timeout=args.timeout)
    print(f"new certificate {cert.subject}, fingerprint {cert.fingerprint}, "
          f"expires {cert.not_after:%Y-%m-%d}; restart the terminal to use it")
    return 0


def cmd_pulser_calibrate(args: argparse.Namespace) -> int:
    from provisioning.pulser import Calibration, parse_litres, record

    cfg = _config(args)
    measured = parse_litres(args.measured) if args.measured is not None else None
    with Calibration(cfg, args.pump, timeout=args.timeout) as cal:
        price = cal.prepare()
        print(f"pump {args.pump}: K-factor now {cal.k_milli / 1000:.3f} pulses per litre; price "
              f"{price / 1000:.3f} per litre; this filling is no sale: it is recorded nowhere (the pump's "
              "electronic totals count it, as every litre)")
        fill = cal.fill(args.litres, wait=args.wait)
    if measured is None:
        try:
            measured = parse_litres(input("litres in the proving measure: "))
        except EOFError:
            raise ConfigError("no litres given: --measured L, or type them when asked",
                              key="--measured") from None
    for line in record(cfg, fill, measured, by=args.by).lines():
        print(line)
    return 0


def cmd_tamper_clear(args: argparse.Namespace) -> int:
    from provisioning.tamper import clear_tamper

    for line in clear_tamper(_config(args), by=args.by).lines():
        print(line)
    return 0


def _litres(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 2 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"whole litres 2..1000, not {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    from forecourtcli.main import LEVELS, _level

    p = sub.add_parser("provision", help="the technician's tools on the terminal: init, selftest, "
                       "rotate-cert, status, pulser-calibrate, tamper-clear", epilog=EPILOG)
    psub = p.add_subparsers(dest="provision_command", required=True, metavar="COMMAND")

    i = psub.add_parser("init", help="make the device key and enroll with a one-time token", epilog=EPILOG)
    i.add_argument("--state-dir", required=True, help="the terminal's state directory (fresh, or a prepared "
                   "terminal.toml whose other sections are kept)")
    i.add_argument("--broker", required=True, help="host:port of the broker's TLS listener")
    i.add_argument("--token", default=None,
                   help="the enrollment token (forecourt registry token create): - reads it from standard "
                        f"input, which keeps it out of `ps` and the shell's history; default ${TOKEN_ENV}")
    i.add_argument("--serial", required=True, help="the terminal's serial number")
    i.add_argument("--claim-dir", required=True, help="directory with ca.pem, claim.pem and claim.key")
    i.add_argument("--device-id", default=None, help="the device id to ask for (default: the serial; the "
                   "token or the registry may decide another)")
    i.add_argument("--wait", type=_seconds, default=120.0,
                   help="seconds to wait for an operator to accept the device (default 120)")
    i.add_argument("--log-level", default="ERROR", type=_level, help=LEVELS.replace("INFO)", "ERROR)"))
    i.set_defaults(func=cmd_init)

    commands = (("selftest", cmd_selftest, "check every device (terminal stopped); exit 1 if any fails"),
                ("rotate-cert", cmd_rotate, "a new device key and certificate, over the current certificate"),
                ("status", cmd_status, "id, station, certificate, versions, backlog, broker"))
    for name, func, text in commands:
        c = psub.add_parser(name, help=text, epilog=EPILOG)
        c.add_argument("--config", required=True, help="the terminal's TOML configuration")
        c.add_argument("--timeout", type=_seconds, default=10.0 if name == "rotate-cert" else 5.0,
                       help="seconds to wait for each device or the broker")
        c.add_argument("--log-level", default="ERROR", type=_level, help=LEVELS.replace("INFO)", "ERROR)"))
        if name == "status":
            c.add_argument("--offline", action="store_true", help="do not try the broker")
        c.set_defaults(func=func)

    c = psub.add_parser("pulser-calibrate", epilog=EPILOG,
                        help="a pulser pump's K-factor from a proving measure (terminal stopped)")
    c.add_argument("--config", required=True, help="the terminal's TOML configuration")
    c.add_argument("--pump", required=True, type=int, help="the pulser pump's number")
    c.add_argument("--litres", type=_litres, default=20, help="the preset: the proving measure's volume "
                   "(whole litres, default 20)")
    c.add_argument("--measured", default=None, help="litres read off the measure after the filling, e.g. "
                   "19.61 (default: asked for once the filling is over)")
    c.add_argument("--by", required=True, help="the technician's name (kept with the new K-factor)")
    c.add_argument("--wait", type=_seconds, default=900.0,
                   help="seconds to wait for the filling to end (default 900)")
    c.add_argument("--timeout", type=_seconds, default=5.0, help="seconds to wait for the pump to answer")
    c.add_argument("--log-level", default="ERROR", type=_level, help=LEVELS.replace("INFO)", "ERROR)"))
    c.set_defaults(func=cmd_pulser_calibrate)

    c = psub.add_parser("tamper-clear", epilog=EPILOG,
                        help="clear the tamper latch after inspecting the housing (refused while tripped)")
    c.add_argument("--config", required=True, help="the terminal's TOML configuration")
    c.add_argument("--by", required=True, help="the technician's name (kept with the clearing)")
    c.add_argument("--log-level", default="ERROR", type=_level, help=LEVELS.replace("INFO)", "ERROR)"))
    c.set_defaults(func=cmd_tamper_clear)
