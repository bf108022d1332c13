# The two commands a newcomer needs: `make sim` and `make test`. Both set up what they need first.
.PHONY: setup sim test bench clean

setup:
	@scripts/setup.sh

sim: setup
	.venv/bin/forecourt sim $(ARGS)

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .venv .state
