# `make demo` and `make test` set themselves up on a fresh machine: a venv in .venv
# with everything installed, refreshed whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

demo: $(STAMP)
	$(BIN)/gpufleet demo

test: $(STAMP)
	scripts/test-deps.sh
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	# Two pytest processes (pytest-xdist): most of the suite waits on the servers and worker
	# processes it starts, so two at a time take 9 minutes instead of 15 on 2 cores;
	# worksteal hands the long end-to-end tests to whichever process is free.
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject: the CPU wheel on these machines.
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
