"""Builds the voucher program: its codes are redeemed through the registry's service requests."""

from __future__ import annotations

from firmware.programs.build import ProgramDeps
from firmware.programs.voucher.program import VoucherProgram
from firmware.service_client import ServiceClient

__all__ = ["build"]


def build(deps: ProgramDeps) -> VoucherProgram:
    host = deps.registry
    return VoucherProgram(host, ServiceClient(host).ask, language=deps.config.terminal.language)
