# Every target creates .venv on first use, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck examples bench bench-quick clean

$(STAMP): pyproject.toml setup.py src/asyncq/_speedups.c  ## (re)builds the C module in place
	@test -n "$(PYTHON)" || { echo "asyncq needs Python 3.11 or newer on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(BENCH_STAMP): $(STAMP)  ## the peer libraries and matplotlib, for the benchmarks only
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

demo: $(STAMP)  ## the main job: a release built, tested and rolled out through a pool, live
	$(BIN)/asyncq demo

test: $(STAMP)  ## the whole test suite, on asyncio's loop and on uvloop, with and without C
	$(BIN)/python -m pytest
	ASYNCQ_PURE_PYTHON=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks typing_tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict src typing_tests

examples: $(STAMP)
	@set -e; for example in examples/*.py; do \
		echo "== $$example"; $(BIN)/python $$example > /dev/null; done

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks --quick --plot benchmarks/quick.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
