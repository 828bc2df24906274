# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if needed and installs the project with its development extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# The C inference core is compiled by pip (cffi) into flight/inference/_native*.so: editing any of
# its sources makes the install step run again, so that `make test` always tests the current C.
NATIVE_SOURCES := setup.py native/build_native.py $(wildcard native/src/*.c native/src/*.h native/include/*.h)

.PHONY: demo test lint format bench bench-protocol bench-runtime bench-inference bench-power bench-emulator soak clean native-check

$(INSTALLED): pyproject.toml $(NATIVE_SOURCES)
	$(PYTHON) -c 'import sys; sys.exit("Penumbra needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The constellation demo (scenarios/demo.toml): prints a summary table and where report.html is.
demo: $(INSTALLED)
	$(BIN)/penumbra sim run scenarios/demo.toml

# The suite (its tests/acceptance against the in-process sil target) and, beside it on the
# second core, the acceptance suite again against a `penumbra flight` process over a pty (power
# cuts included; its output shown after the suite's); then the soak properties scaled down to
# seconds, so that a broken one shows here too. Fails if any of the three fails.
test: $(INSTALLED) lint
	@mkdir -p out/bench
	$(BIN)/penumbra bench run --target pty --record out/bench/pty > out/bench/pty.log 2>&1 & \
	pty=$$!; $(BIN)/python -m pytest; suite=$$?; wait $$pty; bench=$$?; \
	echo "--- penumbra bench run --target pty (out/bench/pty.log) ---"; cat out/bench/pty.log; \
	test $$suite -eq 0 && test $$bench -eq 0
	PENUMBRA_SOAK_EXAMPLES=30 $(BIN)/python -m pytest -m soak -q

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Each benchmark prints the machine and date, then Markdown tables for docs/benchmarks.md.
bench: bench-protocol bench-runtime bench-inference bench-power bench-emulator

bench-protocol: $(INSTALLED)
	$(BIN)/python benchmarks/protocol.py

bench-runtime: $(INSTALLED)
	$(BIN)/python benchmarks/runtime.py

bench-inference: $(INSTALLED)
	$(BIN)/python benchmarks/inference.py

# One satellite for 24 virtual hours per policy and beta angle (about 10 runs, two at a time).
bench-power: $(INSTALLED)
	$(BIN)/python benchmarks/power.py

# The constellation emulator at 10, 100 and 1,000 satellites, and where its time goes (~15 min).
bench-emulator: $(INSTALLED)
	$(BIN)/python benchmarks/emulator.py

# The C core's own test program (golden outputs + naive references, every SIMD level): natively,
# under the address/undefined-behaviour and thread sanitizers, and cross-compiled for aarch64
# under qemu-aarch64 (skipped, exit 77, without the cross tools).
native-check:
	sh native/tests/run.sh native
	sh native/tests/run.sh sanitize 10
	sh native/tests/run.sh aarch64 || [ $$? -eq 77 ]

soak: $(INSTALLED)
	$(BIN)/python -m pytest -m soak --timeout=0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
