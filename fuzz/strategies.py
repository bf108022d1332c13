"""The inputs hypothesis feeds a target: random bytes, and the target's seeds with bytes changed, cut or
added (a valid frame with one fault reaches deeper into a parser than random bytes do)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fuzz.harness import Target

__all__ = ["BOUNDED", "inputs"]

# `make test`: a fixed, bounded set of examples per target (derandomized: the same inputs on every run,
# so a red test is a change in the code, never luck); `make fuzz` explores beyond it.
BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mutate(seed: bytes, insert: bytes, at: int, cut: int) -> bytes:
    at %= len(seed) + 1
    return seed[:at] + insert + seed[at + cut:]


def inputs(target: Target, max_size: int | None = None) -> st.SearchStrategy[bytes]:
    size = min(target.max_len, max_size or target.max_len)
    random = st.binary(max_size=size)
    seeds = target.seeds()
    if not seeds:
        return random
    mutated = st.builds(_mutate, st.sampled_from(seeds), st.binary(max_size=8), st.integers(0, 4096),
                        st.integers(0, 8))
    return st.one_of(random, mutated)
