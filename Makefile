# One command runs the demo, one runs the tests. Both make the virtual environment they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: demo test lint browser bench bench-smoke wrk clean

$(BIN)/erpauth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## demo: set up, create the demo company, print its credentials and URLs, and serve on $(PORT)
demo: $(BIN)/erpauth
	$(BIN)/erpauth demo --port $(PORT)

## test: lint, then every test (API over HTTP on SQLite and PostgreSQL, and the browser tests)
test: $(BIN)/erpauth browser lint
	$(BIN)/pytest

lint: $(BIN)/erpauth
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

## bench: measure the hot paths under load (PostgreSQL needed; Redis used when it answers)
bench: $(BIN)/erpauth wrk
	$(BIN)/python bench/run.py

## bench-smoke: a two-second run of every benchmark step, for CI (no targets enforced)
bench-smoke: $(BIN)/erpauth wrk
	$(BIN)/python bench/run.py --quick

wrk:
	@command -v wrk >/dev/null || { \
	  echo "installing Debian's wrk"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; }

## browser: Debian's chromium for the browser tests (Playwright cannot download its own here)
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
