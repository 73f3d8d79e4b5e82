# celeriac: `make demo` runs a real workload, `make test` runs the whole suite.
# Both set themselves up (a virtualenv in .venv) on a machine with Python 3.11+ and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: all demo test chaos check lint docs bench bench-redis bench-rabbitmq bench-memory bench-monitor bench-canvas clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "celeriac needs Python 3.11 or newer: run make PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	@$(PY) demo/run_demo.py

test: $(STAMP)
	@rm -f .coverage .coverage.*
	$(PY) -m pytest --cov=celeriac --cov-report=term:skip-covered --cov-fail-under=90

# Fault injection: every scenario on every broker (SQLite, and private Redis and RabbitMQ
# servers it starts and kills) in both ack modes; prints the table and writes it into
# docs/guarantees.md. Minutes, not part of `make test` (a few scenarios are). Subsets:
# .venv/bin/python -m chaos --help
chaos: $(STAMP)
	$(PY) -m chaos --write

check: lint
	$(PY) -m pytest tests/unit/test_layers.py -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks demo chaos
	$(PY) -m ruff format --check src tests benchmarks demo chaos

docs: $(STAMP)
	$(PY) -c 'from celeriac.config import settings_markdown; print(settings_markdown(), end="")' > docs/settings.md

# The benchmark runs in its own virtualenv (benchmarks/.venv, made by the script) so that
# the peers it measures never become dependencies of celeriac. BENCH_ARGS: e.g. --quick.
bench:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_sqlite.py $(BENCH_ARGS)

# celeriac, Celery, Dramatiq, RQ, Huey and a bare redis-py loop on one private redis-server
# (started on a free port and stopped by the script; needs redis-server on PATH). Same venv.
bench-redis:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench-redis PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_redis.py $(BENCH_ARGS)

# celeriac, Celery, Dramatiq and a bare py-amqp loop on the RabbitMQ already running on
# 127.0.0.1:5672 (BENCH_ARGS: --url, --vhost, --rabbitmqctl); the script makes a vhost of
# its own with rabbitmqctl, empties it before every job and deletes it at the end. Same venv.
bench-rabbitmq:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench-rabbitmq PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_rabbitmq.py $(BENCH_ARGS)

# Worker memory and the cost of recycling children: celeriac (SQLite and Redis) and Celery
# (Redis), 2 children each; the master sampled with psutil while 50,000 tasks drain. Uses the
# Redis on 127.0.0.1:6379, database 14 (must be empty; flushed around every job; BENCH_ARGS:
# --redis-url). Same venv.
bench-memory:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench-memory PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_memory.py $(BENCH_ARGS)

# The monitor's cost: celeriac's monitor, a bare-driver floor and Flower sampling 50 queues
# (1,000 messages each) once a second, CPU time of the sampling process as a share of one core,
# on SQLite (a scratch file), the Redis on 127.0.0.1:6379 database 13 (must be empty; flushed at
# the end; BENCH_ARGS: --redis-url) and the RabbitMQ on 127.0.0.1:5672 (a vhost of its own, made
# and deleted with rabbitmqctl); a broker it cannot reach is skipped. Installs flower into the
# same venv on first use.
bench-monitor:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench-monitor PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_monitor.py $(BENCH_ARGS)

# Canvas (group and chord of 10,000, chain of 1,000) in celeriac and Celery, 2 workers each, on two
# private redis-servers, broker and result backend, started on free ports and stopped by the script
# (the backend's INFO counters are its alone). Same venv. BENCH_ARGS: --only group,chord,chain.
bench-canvas:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the benchmark needs Python 3.11 or newer: run make bench-canvas PYTHON=python3.11")'
	$(PYTHON) benchmarks/bench_canvas.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov demo-output test-artifacts
