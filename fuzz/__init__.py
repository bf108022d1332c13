"""Fuzz targets for every parser of untrusted bytes or text, and a runner for long runs (`make fuzz`).

The targets are plain functions over bytes (fuzz/targets_*.py); tests/test_fuzz_*.py feed them a bounded
number of hypothesis examples in `make test`, fuzz/run.py feeds them for minutes with atheris (coverage
guided) or, where atheris is not installed, with hypothesis.
"""

from __future__ import annotations

from fuzz.harness import Target

__all__ = ["all_targets", "by_name"]


def all_targets() -> list[Target]:
    from fuzz import targets_card, targets_central, targets_local, targets_update, targets_usb, targets_wire

    return [*targets_wire.TARGETS, *targets_card.TARGETS, *targets_local.TARGETS, *targets_usb.TARGETS,
            *targets_update.TARGETS, *targets_central.TARGETS]


def by_name(name: str) -> Target:
    for target in all_targets():
        if target.name == name:
            return target
    raise KeyError(name)
