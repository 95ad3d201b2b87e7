# callqueue: `make demo` runs the whole system, `make test` runs every test.
# Both bootstrap what they need on a fresh Debian machine with Python 3.11.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv redis bootstrap test demo bench clean

help:
	@echo "make demo   - start mongod, redis, workers and Flower; run the 20-assistant demo"
	@echo "make test   - run the whole test suite against real servers"
	@echo "make bench  - run the benchmark (results in bench/results/)"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

bootstrap: venv redis

test: bootstrap
	PYTHONPATH=$(CURDIR) $(PY) -m pytest $(PYTEST_ARGS)

demo: bootstrap
	PYTHONPATH=$(CURDIR) $(PY) -m devstack demo $(DEMO_ARGS)

bench: bootstrap
	PYTHONPATH=$(CURDIR) $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/results tests/artifacts
