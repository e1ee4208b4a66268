# Eventfold: `make run` starts everything, `make test` runs every test.
# Both create .venv and install requirements.txt on first use; both start an embedded
# PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set.

# The first Python 3.12 or 3.11 that actually runs (a pyenv shim may exist without its version).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do $$p -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' >/dev/null 2>&1 && { echo $$p; exit; }; done; echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test manage benchmark lint clean chromium

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v in ((3, 11), (3, 12)) else "The embedded PostgreSQL and Redis need Python 3.11 or 3.12 (found %d.%d): set PYTHON=python3.12, or DATABASE_URL and REDIS_URL" % v)' \
	  || { [ -n "$$DATABASE_URL" ] && [ -n "$$REDIS_URL" ]; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

run: $(VENV)/.installed
	$(PY) -m app.stack run

test: $(VENV)/.installed chromium
	$(PY) -m app.stack test $(ARGS)

# The browser tests drive Debian's chromium through Playwright (no browser download): installed
# here when missing and we may (root with apt-get); otherwise those tests fail saying so.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: the browser tests need chromium (apt-get install chromium)"; fi; }

manage: $(VENV)/.installed
	$(PY) -m app.stack manage $(ARGS)

benchmark: $(VENV)/.installed
	$(PY) -m app.stack manage benchmark --json benchmark.json $(ARGS)

# ruff, mypy (the files in pyproject.toml's [tool.mypy]), the import-linter contracts (the layers) and
# Django's system checks, the event types' schema contracts among them (no database needed).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) manage.py check --fail-level WARNING

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
