# callqueue: `make demo` runs the whole system, `make test` runs every test.
# Both bootstrap what they need on a fresh Debian machine with Python 3.11.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_DIR := examples/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: help venv system bootstrap test demo bench clean

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

# The Node.js caller (examples/node) with its locked dependencies; after `make system` (Node.js, npm).
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json | system
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# Debian packages: redis-server (the broker the stack starts), chromium (the
# Flower browser test), docker-compose (checks docker-compose.yml), iproute2 and
# iptables (test hosts in network namespaces, devstack/netns.py), nodejs and npm
# (the Node.js caller in examples/node), openssl (throw-away certificates of the TLS
# tests, devstack/tls.py), faketime (libfaketime: workers and beat on a skewed clock in the
# clock tests, devstack/faketime.py).
system:
	@missing=""; PATH="$$PATH:/usr/sbin:/sbin"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v faketime >/dev/null 2>&1 || missing="$$missing faketime"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bootstrap: venv system

test: bootstrap $(NODE_STAMP)
	PYTHONPATH=$(CURDIR) $(PY) -m pytest $(PYTEST_ARGS)

demo: bootstrap
	PYTHONPATH=$(CURDIR) $(PY) -m devstack demo $(DEMO_ARGS)

bench: bootstrap
	PYTHONPATH=$(CURDIR) $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/results tests/artifacts $(NODE_DIR)/node_modules
