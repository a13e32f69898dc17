# Pointclear -- the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
# The PostgreSQL run of the suite; CI sets POINTCLEAR_REQUIRE_POSTGRES=1 so that an
# unreachable server fails the build instead of being skipped.
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/pointclear_test
PG_BENCH_URL ?= postgresql://postgres@127.0.0.1:5432/pointclear_bench
PYTEST_ARGS ?=
# Test processes per run (pytest-xdist); each has its own SQLite file or PostgreSQL database.
PYTEST_WORKERS ?= auto

.PHONY: install run test test-sqlite test-postgres bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

## run: install, migrate the embedded SQLite database, seed demo data, serve on $(HOST):$(PORT)
## (webhook development targets on: the demo may subscribe a receiver on this machine)
run: install
	$(BIN)/pointclear db upgrade
	$(BIN)/pointclear keys init > /dev/null
	$(BIN)/pointclear demo seed
	POINTCLEAR_WEBHOOK_DEV_TARGETS=1 $(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) --timeout 120 --access-logfile - wsgi:application

## test: install, run the whole suite on SQLite, then on PostgreSQL
test: test-sqlite test-postgres

test-sqlite: install
	@echo "== Pointclear test suite on SQLite =="
	POINTCLEAR_TEST_DATABASE_URL= $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect(sys.argv[1].rsplit('/',1)[0] + '/postgres', connect_timeout=3).close()" "$(PG_TEST_URL)" 2>/dev/null; then \
	  echo "== Pointclear test suite on PostgreSQL ($(PG_TEST_URL)) =="; \
	  POINTCLEAR_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); \
	elif [ -n "$$POINTCLEAR_REQUIRE_POSTGRES" ]; then \
	  echo "PostgreSQL is required (POINTCLEAR_REQUIRE_POSTGRES) but $(PG_TEST_URL) is unreachable" >&2; exit 1; \
	else \
	  echo "!! PostgreSQL unreachable at $(PG_TEST_URL): the suite ran on SQLite only;"; \
	  echo "!! set PG_TEST_URL=postgresql://user@host:port/db to run the PostgreSQL half."; \
	fi

## bench: the benchmarks in bench/ (PostgreSQL), figures beside a plain-SQL baseline
bench: install
	PG_BENCH_URL=$(PG_BENCH_URL) $(BIN)/python bench/ledger_post.py
	PG_BENCH_URL=$(PG_BENCH_URL) $(BIN)/python bench/clearing_redeem.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
