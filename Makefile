# `make repro` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU wheel on this project's machines (see README for CUDA / other OSes)
TORCH ?= torch==2.13.0

.PHONY: install repro test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	# silero-vad without its dependencies: pip must never replace the torch installed above
	$(BIN)/pip install --quiet --no-deps "silero-vad>=6.0" && $(BIN)/pip install --quiet packaging
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $@

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# everything: lint, then the whole suite (slow end-to-end tests included)
test: install lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# the unit tests only, for the edit-test loop: what is marked slow (dvc repro runs, Ray, corpus
# synthesis, anything over ~3 s) is left out
test-fast: install lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check

bench: install
	$(BIN)/python benchmarks/featurize.py
	$(BIN)/python benchmarks/tune.py

clean:
	rm -rf $(VENV) data models .pytest_cache
