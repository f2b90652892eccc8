# The two commands a newcomer runs: `make demo` and `make test`. Both set up `.venv` first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench validity clean

# Re-installs only when the package's metadata or the pins change: a second run returns in seconds.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/synthmed demo

# One test process per core (pytest-xdist), each computing with one thread (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: setup
	@set -e; for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script; done

# The larger phantom study at the laptop presets (about 90 minutes on a 2-core CPU; not in the tests).
validity: setup
	$(BIN)/python benchmarks/validity.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
