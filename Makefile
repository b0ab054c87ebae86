# The two commands that work on a fresh machine with Python 3.11: `make demo` and `make test`
# (and `make bench` for the performance benchmarks).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench system-packages clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Tests and benchmarks start their own redis-server on a free port and load the service with wrk;
# install Debian's packages of whichever is missing.
system-packages:
	@missing="$$(for tool in redis-server wrk; do command -v $$tool >/dev/null || echo $$tool; done)"; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

demo: install
	$(BIN)/persona demo

# Every tier: tests/unit, integration (Feast, SQLite, Redis, GE), service (the BentoML service in
# process), e2e (real servers, the CLI, the benchmarks at their smallest size), whole modules
# shared among TEST_WORKERS pytest-xdist workers (TEST_WORKERS=0: one process, tiers in order).
TEST_WORKERS ?= 2
test: install system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The unit tier alone: pure functions, no feature store, no server.
.PHONY: test-fast
test-fast: install
	$(BIN)/python -m pytest -q tests/unit

# Every benchmark in bench/ (or BENCH="retrieval materialize"), each against its floor in the same
# run; results in bench/results/*.json, then the README's Performance table. Start their own Redis.
BENCH ?=
bench: install system-packages
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf data reports
