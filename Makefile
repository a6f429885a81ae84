# watcher — the README's commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install run test lint format mypy all bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

WEB_DEFAULT := 127.0.0.1:8780
run: $(STAMP)  ## start the watcher against the built-in simulated exchange, dashboard on 127.0.0.1:8780 (or $$WATCHER_WEB)
	test -f trades.json || cp trades.json.example trades.json
	$(BIN)/watcher start --simulate $(if $(WATCHER_WEB),,--web $(WEB_DEFAULT)) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check watcher tests examples bench soak
	$(BIN)/ruff format --check watcher tests examples bench soak

format: $(STAMP)
	$(BIN)/ruff format watcher tests examples bench soak
	$(BIN)/ruff check --fix watcher tests examples bench soak

mypy: $(STAMP)
	$(BIN)/mypy watcher bench soak

all: lint mypy test

bench: $(STAMP)  ## measure throughput, latency, memory (QUICK=1: seconds; BENCH_DURATION=S per phase)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(ARGS)

MINUTES ?= 30
SEED    ?=
soak: $(STAMP)  ## random faults against the simulator; bounds checked (MINUTES=2 for CI)
	$(BIN)/python -m soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) --json soak-report.json $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
