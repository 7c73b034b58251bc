# The two commands a person needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` needs only the package and the example servers' extra: a venv of its own,
# without the test and lint tools (`make demo PORT=8080` picks the port).
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
PORT ?= 8000
# axe-core for the browser tests, Lighthouse for `make audit`: from the npm registry,
# pinned by each directory's package-lock.json.
AXE := tests/browser/node_modules/.installed
# The official NOWPayments JavaScript client, run against the sandbox by tests/sdk.
SDK := tests/sdk/node_modules/.installed
LIGHTHOUSE := audit/node_modules/.installed

.PHONY: demo test lint typecheck unit bench docs audit screenshot clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[s3,server,postgres]" --group dev
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade "pip>=25.1"
	$(DEMO_VENV)/bin/python -m pip install --quiet -e ".[server]"
	touch $(DEMO_STAMP)

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE)

$(SDK): tests/sdk/package.json tests/sdk/package-lock.json
	cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error
	touch $(SDK)

$(LIGHTHOUSE): audit/package.json audit/package-lock.json
	cd audit && npm ci --no-audit --no-fund --loglevel=error
	touch $(LIGHTHOUSE)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python examples/fastapi_server.py --host 127.0.0.1 --port $(PORT) \
		--data-dir ./.bitloot-data

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench docs audit
	$(BIN)/ruff format --check src tests examples bench docs audit

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP) $(AXE) $(SDK)
	$(BIN)/pytest

test: lint typecheck $(STAMP) $(AXE) $(SDK)
	$(BIN)/pytest --cov --cov-report=term $(if $(CI),-p no:cacheprovider,)
	$(BIN)/coverage report --include='*/bitloot_core/*' --fail-under=100 --skip-covered

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Lighthouse's four category scores for the shop and order pages (Debian's Chromium).
audit: $(STAMP) $(LIGHTHOUSE)
	$(BIN)/python audit/run.py

# docs/screenshot.png and docs/admin-console.png, the README's pictures, taken by the
# browser tests that check them.
screenshot: $(STAMP) $(AXE)
	BITLOOT_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q -p no:cacheprovider \
		tests/browser/test_page_access.py::test_readme_screenshot \
		tests/browser/test_admin_console.py::test_orders_filter_page_and_open_with_every_record

docs: $(STAMP)
	$(BIN)/python docs/make_state_chart.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage \
		tests/browser/node_modules tests/sdk/node_modules audit/node_modules
