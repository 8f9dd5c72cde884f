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

# `make bench` (docs/benchmarks.md): first the benchmark's own tools, which are never dependencies of the
# project and whose failure to install only costs rows: wrk, the C load generator (apt-get when root, else
# how to get it), and the Rust peers sglang-router and vllm-router (pip, into the venv; BENCH_PEERS=0 skips
# installing them). BENCH_ARGS go to bench_router.py: BENCH_ARGS='--quick --streams 0', '--no-peer', ...
BENCH_PEERS ?= 1
BENCH_ARGS ?=

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "bench: installing wrk (apt-get install -y wrk)"; \
	    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } \
	      || echo "bench: could not install wrk; the Python load generator is used instead"; \
	  else echo "bench: no wrk on PATH (sudo apt-get install wrk); the Python load generator is used instead"; fi; }
	@if [ "$(BENCH_PEERS)" != 0 ]; then \
	  $(BIN)/python -c 'import sglang_router' >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet sglang-router \
	    || echo "bench: could not install sglang-router; its rows are left out"; \
	  [ -x $(BIN)/vllm-router ] || $(BIN)/python -m pip install --quiet vllm-router \
	    || echo "bench: could not install vllm-router; its rows are left out"; \
	fi
	$(BIN)/python benchmarks/bench_router.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
