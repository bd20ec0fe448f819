# ADU: `make run` starts the portal, the task cluster and a demo source; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench system-postgres system-browser

run: system-postgres $(VENV)/.base
	$(PY) manage.py migrate --noinput
	$(PY) manage.py adu_run

test: system-postgres system-browser $(VENV)/.dev lint
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: system-postgres $(VENV)/.bench
	$(PY) bench/export_bench.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: requirements/base.txt | $(VENV)/bin/python
	$(PIP) install -r requirements/base.txt
	touch $@

$(VENV)/.dev: requirements/dev.txt requirements/base.txt | $(VENV)/bin/python
	$(PIP) install -r requirements/dev.txt
	touch $(VENV)/.base $@

$(VENV)/.bench: requirements/bench.txt $(VENV)/.dev
	$(PIP) install -r requirements/bench.txt
	touch $@

# Debian packages, installed only when missing.
system-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql postgresql-contrib; }

system-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
