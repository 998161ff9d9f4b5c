# Teller: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test model install lint bench clean

run: model  ## Set up, train the default model if none is active, and serve the web chat on http://127.0.0.1:8000/.
	$(BIN)/teller serve

test: model  ## Set up, train the default model if none is active, and run the whole test suite.
	# Two workers, each taking whole test files (their module fixtures are built once): the
	# machines have two cores, and a worker holds up to about 6 GB while a slow test runs. Files are
	# handed out as collected, the longest first (tests/conftest.py, LONGEST_FILES).
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

model: install  ## Train the default intent model unless one is already active.
	$(BIN)/teller train --if-missing

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, from the pinned CPU wheel: nothing else may pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install  ## ruff and mypy, as CI would.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: model  ## Latency, throughput, memory and load time of the active model.
	$(BIN)/teller bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
