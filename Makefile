# The two commands a person needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[s3,server]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/fastapi_server.py --host 127.0.0.1 --port 8000 --data-dir ./.bitloot-data

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench docs
	$(BIN)/ruff format --check src tests examples bench docs

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck $(STAMP)
	$(BIN)/pytest --cov --cov-report=term $(if $(CI),-p no:cacheprovider,)
	$(BIN)/coverage report --include='*/bitloot_core/*' --fail-under=100 --skip-covered

bench: $(STAMP)
	$(BIN)/python bench/run.py

docs: $(STAMP)
	$(BIN)/python docs/make_state_chart.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
