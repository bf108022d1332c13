"""`forecourt registry pki init --dir DIR [--broker-host H ...]` and `forecourt registry pki crl --dir DIR`:
the fleet's certificate authority (registry.pki) for the broker's TLS, the registry and the devices."""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts.errors import ConfigError

__all__ = ["add_parsers"]

EPILOG = ("exit codes: 0 ok, 2 usage or configuration error (an authority already in the directory, "
          "a key file others can read)")


def cmd_init(args: argparse.Namespace) -> int:
    from registry.pki import Authority

    hosts = tuple(args.broker_host or ("127.0.0.1", "localhost"))
    for host in hosts:
        if not host or any(c.isspace() or c in "/,*" for c in host):
            raise ConfigError(f"--broker-host {host!r} is not a host name or address", key="--broker-host")
    authority = Authority.create(Path(args.dir), broker_hosts=hosts)
    print(f"authority in {authority.directory}: ca.pem, broker, registry and claim certificates, crl.pem "
          f"(broker names: {', '.join(hosts)})")
    print(f"next: forecourt broker-config --tls-dir {authority.directory} -o mosquitto.conf")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    from registry.pki import CRL_DAYS, Authority

    authority = Authority.load(Path(args.dir))
    authority.refresh_crl()
    print(f"{authority.crl_path} re-signed, valid {CRL_DAYS} days, "
          f"{len(authority.revoked_serials())} revoked; reload the broker (SIGHUP) to read it")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = sub.add_parser("pki", help="the certificate authority for the broker and devices", epilog=EPILOG)
    psub = pki.add_subparsers(dest="pki_command", required=True, metavar="COMMAND")
    init = psub.add_parser("init", help="make a new authority (CA, broker, registry, claim, CRL)",
                           epilog=EPILOG)
    init.add_argument("--dir", required=True, help="directory for the authority's files (keys 0600)")
    init.add_argument("--broker-host", action="append", default=None, metavar="HOST",
                      help="a name or address clients use for the broker (repeat; "
                      "default 127.0.0.1 and localhost)")
    init.set_defaults(func=cmd_init)
    crl = psub.add_parser("crl", help="re-sign the CRL with a new next update (same revocations)",
                          epilog=EPILOG)
    crl.add_argument("--dir", required=True, help="the authority's directory")
    crl.set_defaults(func=cmd_crl)
