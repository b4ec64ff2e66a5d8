# The two commands a new machine needs: `make run` and `make test`. Both build .venv (and the dashboard's
# npm packages) from nothing when missing and reuse them while pyproject.toml / package-lock.json are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
MINUTES ?= 10
SEED ?= 1

.PHONY: run paper live test bench soak lint venv js clean sim

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

js: $(NPM_STAMP)

run: $(STAMP) $(NPM_STAMP)
	$(PY) -m server --override configs/sim.yml --host $(HOST) --port $(PORT)

paper: $(STAMP) $(NPM_STAMP)
	$(PY) -m server --override configs/paper.yml --host $(HOST) --port $(PORT)

live: $(STAMP) $(NPM_STAMP)
	$(PY) -m server --override configs/live.yml --host $(HOST) --port $(PORT)

sim: $(STAMP)
	$(PY) -m bot.sim --host 127.0.0.1 --port 8765 --seed 1

# lint first: a red type check or format check fails the test run (and so CI)
test: lint $(NPM_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench

# the chaos harness: faults, control calls and hard restarts against a trading bot; last line is a JSON summary
soak: $(STAMP)
	$(PY) -m bench.soak --minutes $(MINUTES) --seed $(SEED)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules
