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

# Two workers: most tests wait on processes, sockets and the bus, so two share 2 cores well.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

up: $(STAMP)
	$(BIN)/tailor up

# Every benchmark script in bench/ (helpers: peak_rss.py, and _*.py), each through
# peak_rss.py so it also prints its peak RSS and the load it ran under.
BENCHES = $(filter-out bench/peak_rss.py bench/_%.py,$(sort $(wildcard bench/*.py)))

bench: $(STAMP)
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(BIN)/python bench/peak_rss.py $$b; done

clean:
	rm -rf .tailor .pytest_cache .ruff_cache
