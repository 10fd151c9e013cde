# Two entry points a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: setup browser run test test-fast lint format bench bench-daily lock clean

setup: $(STAMP)

# Installs exactly what the locks pin (hash-checked): the runtime (requirements.lock) and
# the test and lint tools (requirements-dev.lock), then the project itself.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements.lock requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: setup
	$(BIN)/crm run

# The report test opens the HTML report in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the report test..."; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed (apt-get install chromium); the browser check will be skipped."; \
	  fi; }

test: setup browser
	$(BIN)/python -m pytest -q

# The unit tier: no Prefect server, no browser, no whole runs (tests/unit).
test-fast: setup
	$(BIN)/python -m pytest -q tests/unit -m "not browser"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# make bench SIZE=S|M|L [BENCH_ARGS="--no-notebook --stages value,churn ..."]; see benchmarks/README.md
bench: setup
	$(BIN)/python benchmarks/run.py --size $(or $(SIZE),S) $(BENCH_ARGS)

# make bench-daily SIZE=S|M|L DAYS=10 [BENCH_ARGS="--check-equivalence"]: a first load, then
# one run per day; see benchmarks/README.md, "Daily mode"
bench-daily: setup
	$(BIN)/python benchmarks/daily.py --size $(or $(SIZE),S) --days $(or $(DAYS),10) $(BENCH_ARGS)

# Re-pin after changing dependencies in pyproject.toml. One universal resolution for every
# platform and Python the project supports, with the dask extra (issue 13) so the tests
# run the Dask runner (requires-python: 3.11 to 3.13, environment
# markers where pins differ); the dev tools are pinned apart, constrained by the runtime.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dask --extra s3 --universal --python-version 3.11 --generate-hashes -o requirements.lock
	$(BIN)/uv pip compile --group pyproject.toml:dev -c requirements.lock --universal --python-version 3.11 --generate-hashes -o requirements-dev.lock

clean:
	rm -rf data/warehouse data/serving exports .pytest_cache
