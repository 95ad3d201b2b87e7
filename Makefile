# callqueue: `make demo` runs the whole system, `make test` runs every test.
# Both bootstrap what they need on a fresh Debian machine with Python 3.11: `make demo` only the
# virtualenv and redis-server (system-demo), `make test` also the tools its tests drive (system-test).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_DIR := examples/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: help venv system-demo system-test system bootstrap test check demo bench clean

help:
	@echo "make demo   - start mongod, redis, workers and Flower; run the 20-assistant demo"
	@echo "make test   - run the whole test suite against real servers"
	@echo "make check  - the fast loop between edits: unit, contract and docs tests, a slice of integration"
	@echo "make bench  - run the benchmark (results in bench/results/)"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The Node.js caller (examples/node) with its locked dependencies; after `make system-test` (Node.js, npm).
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json | system-test
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# Install the Debian packages listed in $$missing, if any; that needs root, and without it the message says
# what to run instead.
APT_INSTALL = if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "$@ needs Debian packages:$$missing; installing them needs root:"; \
			echo "  sudo apt-get install$$missing   (or: sudo make $@), then run make again"; \
			exit 1; \
		fi; \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# What the demo runs besides the virtualenv: redis-server (the broker the stack starts). Where it is on the
# PATH already, nothing is installed and nothing needs root.
system-demo:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	$(APT_INSTALL)

# What only the tests drive: chromium and chromium-driver (the Flower and dashboard browser tests),
# docker-compose (checks docker-compose.yml), iproute2 and iptables (test hosts in network namespaces, devstack/netns.py; also the benchmark's failover
# part), nodejs and npm (the Node.js caller in examples/node), openssl (throw-away certificates of the TLS
# tests, devstack/tls.py), faketime (libfaketime: workers and beat on a skewed clock in the clock tests,
# devstack/faketime.py).
system-test:
	@missing=""; PATH="$$PATH:/usr/sbin:/sbin"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v faketime >/dev/null 2>&1 || missing="$$missing faketime"; \
	$(APT_INSTALL)

system: system-demo system-test

bootstrap: venv system

# Two pytest-xdist workers, each taking whole modules, the longest first (tests/conftest.py); TEST_WORKERS=0
# runs in one process.
TEST_WORKERS ?= 2

test: venv system-demo system-test $(NODE_STAMP)
	PYTHONPATH=$(CURDIR) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The loop between two edits (under 2 minutes): no fault suites, no browser, no Node.js, no apt-get.
# `make check CHECK=tests/unit/test_validation.py` runs one module (or any pytest selection) instead.
CHECK ?= tests/unit tests/acceptance/test_readme.py tests/acceptance/test_contract_readme.py \
	tests/acceptance/test_docs.py tests/acceptance/test_contract_asyncapi.py \
	tests/integration/test_assignment_tasks.py tests/integration/test_contract_answers.py \
	tests/integration/test_bad_input.py tests/integration/test_campaigns.py tests/integration/test_leases.py

check: venv
	PYTHONPATH=$(CURDIR) $(PY) -m pytest -m "not node" -q $(CHECK) $(PYTEST_ARGS)

demo: venv system-demo
	PYTHONPATH=$(CURDIR) $(PY) -m devstack demo $(DEMO_ARGS)

bench: venv system-demo system-test
	PYTHONPATH=$(CURDIR) $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/results tests/artifacts $(NODE_DIR)/node_modules
