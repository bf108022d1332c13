# The two commands a newcomer needs: `make sim` and `make test`. Both set up what they need first.
# `make test` runs, in order and stopping at the first failure: ruff, mypy --strict on the lower layers,
# the docstring examples, then pytest (PYTEST_ARGS selects tests, e.g. PYTEST_ARGS="-m 'not e2e'").
.PHONY: setup sim test lint typecheck doctest bench fuzz clean screens web-screens

# Packages type-checked strictly: the layers below the simulator and the command line.
STRICT = contracts drivers registry firmware
# Every module with a docstring example: the wire formats (MQTT, ISO 8583, TLV, APDUs, DART) and any other.
DOCTESTS = contracts $(shell grep -rlE --include='*.py' '^\s*>>> ' ui drivers registry firmware hostsim \
	provisioning forecourtcli)

setup:
	@scripts/setup.sh

sim: setup
	.venv/bin/forecourt sim $(ARGS)

# pytest on two workers (pytest-xdist): the tests that run the machine's one pcscd go to one of them, in turn
# (tests/conftest.py), the rest share both. PYTEST_ARGS="-n 0" runs them in one process.
PYTEST_WORKERS ?= 2
test: setup lint typecheck doctest
	.venv/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .

typecheck: setup
	.venv/bin/mypy --strict $(STRICT)

doctest: setup
	.venv/bin/python -m pytest -q --doctest-modules $(DOCTESTS)

bench: setup
	for b in benchmarks/*.py; do .venv/bin/python $$b || exit 1; done

# `make fuzz`: every parser of untrusted input (fuzz/targets_*.py) fed FUZZ_SECONDS each, coverage guided
# with atheris (hypothesis where atheris is not installed); prints inputs tried, distinct failures and time
# per target. FUZZ_TARGETS="tlv dart_decode" picks targets, FUZZ_JOBS runs several at once.
FUZZ_SECONDS ?= 180
FUZZ_JOBS ?= 1
FUZZ_TARGETS ?=
fuzz: setup
	.venv/bin/python -m fuzz.run --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS) $(FUZZ_TARGETS)

# Every screen in every language as PNG (docs/screens/<language>/<screen>.png), drawn without a display.
screens: setup
	SDL_VIDEODRIVER=dummy .venv/bin/python -m ui.screenshots docs/screens

# The back office's main pages as PNG (docs/web/<page>.png, 1280x900) in headless Chromium over demo data.
web-screens: setup
	.venv/bin/python -m registry.web.screenshots docs/web

clean:
	rm -rf .venv .state
