# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything and serves the digits project on http://127.0.0.1:8000
#   make test   installs everything and runs the tests on SQLite and on PostgreSQL
VENV ?= .venv
PYTHON ?= python3
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/quarry_test
PYTEST_ARGS ?= -m "not gpu and not e2e"
# browser tests (tests/e2e): once, against their own server, when Debian's Chromium is installed
CHROMIUM ?= /usr/bin/chromium
E2E_ARGS ?= -m e2e

.PHONY: setup demo serve test test-sqlite test-postgres test-e2e lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/quarry demo

serve: setup
	$(VENV)/bin/quarry serve

test: setup test-sqlite test-postgres test-e2e

test-sqlite: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-postgres: setup
	QUARRY_TEST_DATABASE_URL=$(PG_TEST_URL) $(VENV)/bin/pytest $(PYTEST_ARGS)

test-e2e: setup
	@if [ -x "$(CHROMIUM)" ]; then QUARRY_CHROMIUM=$(CHROMIUM) $(VENV)/bin/pytest $(E2E_ARGS) tests/e2e; \
	else echo "skipping the browser tests: $(CHROMIUM) is missing (apt-get install chromium)"; fi

lint: setup
	$(VENV)/bin/ruff check app tests bench
