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

install: $(STAMP)

serve: install
	$(VENV)/bin/govc serve $(ARGS)

test: install $(ISO_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
