# `make run` and `make test` each set up .venv when it is missing, compile the fused path's
# kernels and C++ plan checks for this machine (`optimlab build`: once, then found in the
# cache), fetch the playground page's scripts from the npm registry (once), then do their job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.optimlab-installed
VENDOR := src/optimlab/lab/playground/static/vendor

.PHONY: run test bench build lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the exact release this machine carries locally (CPU build);
	# pyproject.toml itself asks only for torch>=2.4, which this satisfies.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	# dev: the tests' tools; gpu: Triton, whose kernels the tests run in its interpreter;
	# playground: its web server
	$(PY) -m pip install --quiet -e '.[dev,gpu,playground]'
	touch $(STAMP)

# The playground's scripts and styles (Plotly, KaTeX), at the versions web/package-lock.json
# records, copied into the package so that the page works offline.
$(VENDOR)/.built: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/katex
	cp web/node_modules/plotly.js-cartesian-dist-min/plotly-cartesian.min.js $(VENDOR)/
	cp web/node_modules/plotly.js-cartesian-dist-min/LICENSE $(VENDOR)/plotly-LICENSE
	cp web/node_modules/katex/dist/katex.min.js web/node_modules/katex/dist/katex.min.css $(VENDOR)/katex/
	cp -r web/node_modules/katex/dist/fonts $(VENDOR)/katex/
	cp web/node_modules/katex/LICENSE $(VENDOR)/katex/LICENSE
	touch $@

build: $(STAMP) $(VENDOR)/.built
	$(VENV)/bin/optimlab build

run: build
	$(VENV)/bin/optimlab compare --out runs/latest --overwrite

test: build
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium unavailable: the browser tests will say so"
	$(PY) -m pytest -q -n 2 --dist loadgroup

# `make bench` runs `optimlab bench`, which writes BENCHMARKS.md (about 12 minutes on 2 cores; the
# report says how long its run took); `make bench BENCH_ARGS=--quick` for a subset (1.4 minutes),
# `BENCH_ARGS="--device cuda"` on a GPU machine (`python -m benchmarks` is the same command).
bench: build
	$(VENV)/bin/optimlab bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache web/node_modules $(VENDOR)
