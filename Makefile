# `make run` and `make test` each set up .venv when it is missing, compile the fused path's
# kernels and C++ plan checks for this machine (`optimlab build`: once, then found in the
# cache), then do their job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.optimlab-installed

.PHONY: run test bench build lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the exact release this machine carries locally (CPU build);
	# pyproject.toml itself asks only for torch>=2.4, which this satisfies.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	# dev: the tests' tools; gpu: Triton, whose kernels the tests run in its interpreter
	$(PY) -m pip install --quiet -e '.[dev,gpu]'
	touch $(STAMP)

build: $(STAMP)
	$(VENV)/bin/optimlab build

run: build
	$(VENV)/bin/optimlab compare --out runs/latest --overwrite

test: build
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium unavailable: the report browser test will say so"
	$(PY) -m pytest -q -n 2 --dist loadgroup

# `make bench` runs `optimlab bench`, which writes BENCHMARKS.md (about 5 minutes on 2 cores);
# `make bench BENCH_ARGS=--quick` for a subset of about 1.5 minutes, `BENCH_ARGS="--device cuda"`
# on a GPU machine (`python -m benchmarks` is the same command).
bench: build
	$(VENV)/bin/optimlab bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
