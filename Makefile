# Parley's two commands: `make run` and `make test`. The rest are conveniences.

VENV := .venv
PY := $(VENV)/bin/python
# Local commands run with DEBUG on unless you say otherwise (see README, Configuration).
export DEBUG ?= 1

.PHONY: run test lint format install clean

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runserver 127.0.0.1:8000

test: $(VENV)/.installed
	$(PY) scripts/run_tests.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: $(VENV)/.installed

# Rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || { python=$$(scripts/find-python) && echo "Creating $(VENV) with $$python" \
		&& $$python -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) staticfiles test-results .pytest_cache .ruff_cache
