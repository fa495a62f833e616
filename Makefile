# Tailor: `make demo` runs the main job end to end; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint up bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tailor needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tailor demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

up: $(STAMP)
	$(BIN)/tailor up

bench: $(STAMP)
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/allocation.py
	$(BIN)/python bench/randomization.py
	$(BIN)/python bench/notifications.py

clean:
	rm -rf .tailor .pytest_cache .ruff_cache
