"""Every fuzz target (fuzz/targets_*.py), bounded for `make test`: any input parses or raises the module's
typed error within the time bound; the seeds are taken; a defect once found stays fixed. The round trips
of each family are in tests/test_fuzz_wire.py, test_fuzz_card.py and test_fuzz_local.py."""

from __future__ import annotations

import pytest
from hypothesis import given

from fuzz import all_targets
from fuzz.harness import Known, Target, check, check_known
from fuzz.known import KNOWN, fixed, reported
from fuzz.strategies import BOUNDED, inputs

TARGETS = all_targets()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_any_input_parses_or_raises_the_typed_error(target: Target) -> None:
    @BOUNDED
    @given(inputs(target, max_size=512))
    def prop(data: bytes) -> None:
        check_known(target, data, KNOWN.get(target.name, ()))

    prop()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_seeds_are_taken(target: Target) -> None:
    for seed in target.seeds():
        check_known(target, seed, KNOWN.get(target.name, ()))


def test_target_names_are_unique() -> None:
    names = [t.name for t in TARGETS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("target", "known"), reported(TARGETS))
def test_reported_defect(target: Target, known: Known) -> None:
    check(target, known.example)


@pytest.mark.parametrize(("target", "data"), fixed(TARGETS))
def test_fixed_defect_stays_fixed(target: Target, data: bytes) -> None:
    check(target, data)
