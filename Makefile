# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# make test and make bench run against Postgres; the local server is the default.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tarot
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tarot_bench

.PHONY: install run test bench lint format lock

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

install: $(VENV)/.installed

## Set everything up and serve the platform at http://127.0.0.1:8000 (Ctrl-C stops it all).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py ensure_staff
	$(PY) manage.py serve

## The whole suite, on Postgres.
test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m pytest $(PYTEST_ARGS)

## Speed targets live here, never in timed test assertions: the issues' benchmarks.
bench: install
	export DATABASE_URL=$${DATABASE_URL:-$(BENCH_DATABASE_URL)} && \
	$(PY) -m config.createdb && $(PY) manage.py migrate --noinput -v0 && \
	$(PY) manage.py bench --spread celtic_cross --readings 10 --concurrency 2 --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --via-worker --spread celtic_cross --readings 10 --concurrency 2 --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --spread celtic_cross --readings 30 --concurrency 10 --workers 2 --rpm 600 --ttft-ms 300 --ms-per-token 5 --baseline seed $(BENCH_ARGS) && \
	$(PY) manage.py bench --spread celtic_cross --readings 40 --concurrency 20 --budget-usd 0.2 $(BENCH_ARGS) && \
	$(PY) manage.py bench --via-worker --spread celtic_cross --readings 120 --concurrency 120 --rpm 600 --one-model --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --spread celtic_cross --readings 30 --concurrency 5 --cost-modes $(BENCH_ARGS) && \
	$(PY) manage.py bench --stream --spread celtic_cross --readings 5 --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --spread celtic_cross --readings 30 --concurrency 10 --rpm 600 --fail-rate 0.2 --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --via-worker --spread celtic_cross --readings 120 --concurrency 120 --users 40 --rpm 600 --one-model --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS) && \
	$(PY) manage.py bench --via-worker --spread celtic_cross --readings 20 --concurrency 20 --users 20 --rpm 600 --itpm 30000 --otpm 8000 --one-model --ttft-ms 300 --ms-per-token 5 $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Regenerate requirements.lock from pyproject.toml's ranges.
lock:
	rm -rf /tmp/tarot-lock && $(PYTHON) -m venv /tmp/tarot-lock
	/tmp/tarot-lock/bin/pip install --quiet ".[dev]"
	/tmp/tarot-lock/bin/pip freeze --exclude tarot-platform > requirements.lock
