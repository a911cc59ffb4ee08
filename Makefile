# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make demo   runs the demo (installs what is missing first)
#   make test   runs ruff, mypy --strict and the test suite against real servers
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-postgres lint typecheck pytest bench deps system-deps clean

deps: system-deps $(STAMP)

system-deps:
	@./scripts/ensure-system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: deps
	$(BIN)/coldchain demo $(DEMO_ARGS)

test: deps lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

# The whole suite with every test's registry on PostgreSQL (make test runs the registry,
# alerting-book, lease and failover tests on both backends; this runs everything).
test-postgres: deps
	$(BIN)/python -m pytest --registry=postgresql $(PYTEST_ARGS)

bench: deps
	@./scripts/ensure-bench-deps.sh
	$(BIN)/coldchain bench ingest

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache .coverage
