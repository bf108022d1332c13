"""Scenario usb-bundle: a site without a link exchanges sales and configuration on a USB stick.

The broker is stopped; two bank sales are made (the acquirer is reached on its own line) and wait in the
journal. `forecourt usb export-sales` writes them to a file, `forecourt usb import-sales` stores them in the
registry, and a second import of the same file stores nothing. Nothing is synced on the terminal until the
registry's signed receipt is imported there (twice: the second changes nothing). The registry's
configuration, changed meanwhile (a new price), goes the other way: `forecourt usb export-config`, then
`import-config` twice on the terminal (installed, then unchanged). With the broker back, a new sale syncs
as usual and the stick's sales stay stored once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from hostsim.services import child_env, forecourt_command
from hostsim.world import Simulator, card_index
from provisioning.identity import create_device_key, make_csr
from registry.db import open_database
from registry.models import Device, Nozzle, Transaction
from registry.pki import Authority, fingerprint

__all__ = ["USB_SCENARIOS", "authority_dir", "provision_identity", "usb_bundle"]

NEW_PRICE = 1701           # pump 1 nozzle 1, milli per litre: the configuration the stick carries


def _cli(run: Any, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(forecourt_command("usb", *args), capture_output=True, text=True, env=child_env(),
                          timeout=60, check=False)
    run.log(f"forecourt usb {args[0]}: exit {done.returncode}: {(done.stdout + done.stderr).strip()}")
    return done


def authority_dir(sim: Simulator) -> Path:
    """The CA that issued the terminal's certificate (the simulator's, STATE/pki); one made here when the
    simulator runs without one."""
    authority = getattr(sim, "authority", None)
    if isinstance(authority, Authority):
        return authority.directory
    ca_dir = sim.state / "usb-pki"
    if not (ca_dir / "ca.key").exists():
        Authority.create(ca_dir)
    return ca_dir


def provision_identity(sim: Simulator) -> Path:
    """The terminal's device key and certificate (when the simulator gave it none) and the certificate's
    fingerprint on the registry's device row, as enrollment leaves them. Returns the CA directory."""
    ca_dir = authority_dir(sim)
    tdir = sim.terminal_config.parent
    device_id = sim.device["id"]
    if not (tdir / "device.pem").exists():
        key = create_device_key(tdir / "device.key")
        issued = Authority.load(ca_dir).issue(make_csr(key, device_id), device_id)
        (tdir / "device.pem").write_text(issued.cert_pem)
    engine, sessions = open_database(sim.registry_url)
    try:
        with sessions() as s:
            device = s.get(Device, device_id)
            if device is not None and device.cert_fingerprint is None:
                device.cert_fingerprint = fingerprint((tdir / "device.pem").read_text())
                s.commit()
    finally:
        engine.dispose()
    return ca_dir


def _stored(sim: Simulator, sale_ids: list[str]) -> int:
    engine, sessions = open_database(sim.registry_url)
    try:
        with sessions() as s:
            return len(s.scalars(select(Transaction.id).where(Transaction.sale_id.in_(sale_ids))).all())
    finally:
        engine.dispose()


def _unsynced(sim: Simulator) -> set[str]:
    journal = sim.journal()
    try:
        return {rec.id for rec in journal.unsynced()}
    finally:
        journal.close()


def _set_price(sim: Simulator, price: int) -> None:
    engine, sessions = open_database(sim.registry_url)
    try:
        with sessions() as s:
            s.execute(update(Nozzle).where(Nozzle.station_id == sim.device["station"], Nozzle.pump == 1,
                                           Nozzle.nozzle == 1).values(price_milli=price))
            s.commit()
    finally:
        engine.dispose()


def _bank_sale(run: Any, volume_cl: int) -> str:
    """A Visa sale with online PIN: the acquirer approves on its own line, no registry needed."""
    run.ready()
    mark = run.insert(card_index("visa_dda_online_pin"))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    run.fill(1, 1, volume_cl)
    run.wait(("thank_you", "no_fuel"), mark, timeout=30)
    run.wait(("idle", "idle_bank_only"), mark, timeout=30)     # no link: bank cards only
    return str(run.last_sale_id())


def _registry_key_args(sim: Simulator, stick: Path) -> list[str]:
    """--registry-key when the configuration the terminal runs names no bundle key yet."""
    stored = sim.terminal_config.parent / "config.signed.json"
    body = json.loads(stored.read_text()).get("body", {}) if stored.exists() else {}
    if body.get("registry_bundle_key"):
        return []
    key = stick / "registry-bundle-key.pem"
    _cli_quiet("bundle-key", "--state-dir", str(sim.state / "registry"), "-o", str(key))
    return ["--registry-key", str(key)]


def _cli_quiet(*args: str) -> None:
    subprocess.run(forecourt_command("usb", *args), capture_output=True, env=child_env(), timeout=60,
                   check=True)


def usb_bundle(run: Any) -> None:
    sim: Simulator = run.sim
    run.ready()
    ca_dir = provision_identity(sim)
    stick = sim.state / "stick"
    stick.mkdir(exist_ok=True)
    sim.stop_broker()
    run.log("broker stopped: the site has no link")
    sale_ids = [_bank_sale(run, 1000), _bank_sale(run, 1500)]
    run.sale_ids.extend(sale_ids)
    waiting = _unsynced(sim)
    run.check(set(sale_ids) <= waiting, "both sales wait in the journal, unsynced")

    config = str(sim.terminal_config)
    sales_file = stick / "sales.fcb"
    export = _cli(run, "export-sales", "--config", config, "-o", str(sales_file),
                  *_registry_key_args(sim, stick))
    run.check(export.returncode == 0, "sales exported to the stick")
    registry = ["--db", sim.registry_url, "--state-dir", str(sim.state / "registry"),
                "--tls-dir", str(ca_dir)]
    first = _cli(run, "import-sales", *registry, str(sales_file))
    run.check(first.returncode == 0 and f"{len(waiting)} sales, {len(waiting)} new" in first.stdout,
              "first import stores every sale waiting")
    run.check(_stored(sim, sale_ids) == 2, "the registry holds both sales")
    receipt_file = stick / "receipt.fcr"
    second = _cli(run, "import-sales", *registry, "--receipt", str(receipt_file), str(sales_file))
    run.check(second.returncode == 0 and "nothing new" in second.stdout, "second import stores nothing new")
    run.check(_stored(sim, sale_ids) == 2, "still two sales: stored once")
    run.check(_unsynced(sim) >= set(sale_ids), "an export and an import mark nothing synced on the terminal")
    acked = _cli(run, "import-receipt", "--config", config, str(receipt_file))
    run.check(acked.returncode == 0 and acked.stdout.startswith("2 sales synced"),
              "the registry's receipt marks both sales synced")
    run.check(not _unsynced(sim) & set(sale_ids), "no sale waits for the registry any more")
    acked = _cli(run, "import-receipt", "--config", config, str(receipt_file))
    run.check(acked.returncode == 0 and acked.stdout.startswith("0 sales synced"), "the same receipt again: "
              "nothing changes")

    _set_price(sim, NEW_PRICE)
    config_file = stick / "config.fcb"
    out = _cli(run, "export-config", "--db", sim.registry_url, "--state-dir", str(sim.state / "registry"),
               "--device", sim.device["id"], "-o", str(config_file))
    run.check(out.returncode == 0, "configuration exported from the registry")
    installed = _cli(run, "import-config", "--config", config, str(config_file))
    run.check(installed.returncode == 0 and "installed" in installed.stdout, "configuration installed")
    stored = (sim.terminal_config.parent / "config.signed.json").read_bytes()
    again = _cli(run, "import-config", "--config", config, str(config_file))
    run.check(again.returncode == 0 and "nothing changed" in again.stdout, "second import changes nothing")
    run.check((sim.terminal_config.parent / "config.signed.json").read_bytes() == stored,
              "the stored configuration is untouched by the second import")

    sim.start_broker()                    # on the port the terminal and the registry were given
    run.log("broker back")
    third = _bank_sale(run, 500)          # a sale over the link again, synced as usual
    run.sale_ids.append(third)
    run.check(run.wait_synced(third, timeout=60).synced, "a sale made once the link is back is synced")
    run.check(_stored(sim, sale_ids) == 2, "the stick's sales are stored once")


USB_SCENARIOS = {"usb-bundle": usb_bundle}
