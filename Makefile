# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if needed and installs the project with its development extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format bench soak clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Penumbra needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/penumbra demo

# The suite, then the soak properties scaled down to seconds, so that a broken one shows here too.
test: $(INSTALLED) lint
	$(BIN)/python -m pytest
	PENUMBRA_SOAK_EXAMPLES=30 $(BIN)/python -m pytest -m soak -q

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED)
	$(BIN)/python benchmarks/protocol.py

soak: $(INSTALLED)
	$(BIN)/python -m pytest -m soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
