# The two commands of the README: `make serve` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The isomorphic-git interop tests run a tiny node project; npm ci installs its pinned
# dependencies once (node_modules/.package-lock.json is npm's own record of the install).
ISO := interop/isomorphic
ISO_STAMP := $(ISO)/node_modules/.package-lock.json

$(ISO_STAMP): $(ISO)/package.json $(ISO)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(ISO) --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the isomorphic-git interop tests will be skipped"; \
	fi

# Stock git's own server (git http-backend under lighttpd) is the reference some interop tests
# compare govc with; install lighttpd from Debian when it is missing and we may (best effort:
# without it those comparisons are skipped, never failed).
LIGHTTPD_STAMP := $(VENV)/.lighttpd-checked

$(LIGHTTPD_STAMP): | $(STAMP)
	@command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || { 		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then 			( DEBIAN_FRONTEND=noninteractive apt-get install -y -q lighttpd >/dev/null 2>&1 \
			  || ( apt-get update -q >/dev/null 2>&1 && \
			       DEBIAN_FRONTEND=noninteractive apt-get install -y -q lighttpd >/dev/null 2>&1 ) ) \
			|| echo "could not install lighttpd: comparisons with git http-backend will be skipped"; \
		else \
			echo "lighttpd is missing: comparisons with git http-backend will be skipped"; \
		fi; \
	}
	@touch $@

# The PostgreSQL backend's tests (and the multi-node tests) start a real PostgreSQL server from
# the machine's own binaries (tests/pgserver.py); install Debian's server when they are missing and
# we may (best effort: without it those tests are skipped, never failed).
POSTGRES_STAMP := $(VENV)/.postgres-checked

$(POSTGRES_STAMP): | $(STAMP)
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			( DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
			  || ( apt-get update -q >/dev/null 2>&1 && \
			       DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 ) ) \
			|| echo "could not install postgresql: the PostgreSQL and multi-node tests will be skipped"; \
		else \
			echo "PostgreSQL is missing: the PostgreSQL and multi-node tests will be skipped"; \
		fi; \
	}
	@touch $@

install: $(STAMP)

serve: install
	$(VENV)/bin/govc serve $(ARGS)

test: install $(ISO_STAMP) $(LIGHTTPD_STAMP) $(POSTGRES_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
