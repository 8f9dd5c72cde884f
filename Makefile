# The two set-up commands of the README: `make demo` and `make test`. Both create (or reuse)
# the local virtual environment .venv with everything the project needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,paddle,speed,notebooks]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fdrouter.demo

# Property-based tests draw the same examples on every run (profile "ci", see tests/conftest.py);
# `HYPOTHESIS_PROFILE=explore make test` draws fresh random ones.
HYPOTHESIS_PROFILE ?= ci
export HYPOTHESIS_PROFILE

test: $(STAMP)
	$(BIN)/python ci/run_matrix.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_router.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
