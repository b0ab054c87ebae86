# The two commands that work on a fresh machine with Python 3.11: `make demo` and `make test`
# (and `make bench` for the performance benchmarks).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := False
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install demo test bench redis-server clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Tests start their own redis-server on a free port; install Debian's package when it is missing.
redis-server:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

demo: install
	$(BIN)/persona demo

test: install redis-server
	$(BIN)/python -m pytest -q

# Every benchmark in bench/ (or BENCH="retrieval materialize"), each against its floor in the same
# run; results in bench/results/*.json, then the README's Performance table. Start their own Redis.
BENCH ?=
bench: install redis-server
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf data reports
