# Two commands on a fresh machine:
#   make demo   - runs the main job on the bundled example
#   make test   - runs the test suite
#   make app    - opens the web page (upload data, run, download the report)
# Each builds the local virtual environment from pyproject.toml when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# mlmeta's matrices are small (p x p, per-cluster blocks): a multi-threaded BLAS only adds
# thread start-up and contention on a busy 2-core machine.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean app

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,report,app,dask]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlmeta run examples/alliance_like.toml
	@echo "The report folder is ./alliance_like-report/: open report.html in a browser (offline);"
	@echo "report.md, report.docx, results.json and figures/ are next to it. The data are SIMULATED."

# the web page on http://127.0.0.1:8765/ (or a free port); Ctrl-C stops it
app: $(STAMP)
	$(BIN)/mlmeta app

# the suite on both cores (pytest-xdist); the browser tests start their own servers on free ports
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# ruff (lint and format) and mypy, as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_targets.py
	$(BIN)/python benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
