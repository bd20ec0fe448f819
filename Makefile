# ADU: `make run` starts the portal, the task cluster and a demo source; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q

.PHONY: run test lint lint-docker bench wheelhouse install-offline \
	system-postgres system-redis system-browser system-compose system-build

run: system-postgres $(VENV)/.base
	$(PY) manage.py migrate --noinput
	$(PY) manage.py adu_run

# The whole suite on SQLite and the ORM broker, then every test that runs jobs (marked
# `jobs` by conftest.py) again on a throwaway PostgreSQL metadata database and redis-server.
test: system-postgres system-redis system-browser $(VENV)/.dev lint lint-docker
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest
	$(PY) -m pytest -p tests.backends --backends postgres-redis -m jobs

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# No Docker engine runs here: the files are linted, not run (see the README).
lint-docker: $(VENV)/.dev system-compose
	$(VENV)/bin/hadolint docker/Dockerfile
	ADU_ENV_FILE=adu.env.example docker-compose -p adu --env-file docker/adu.env.example \
	  -f docker/compose.yaml config -q

bench: system-postgres $(VENV)/.bench
	$(PY) bench/export_bench.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# native/: ADU's binary COPY decoder, a C extension built here (see its source).
NATIVE := native/adu_pgcopy.c native/setup.py native/pyproject.toml

$(VENV)/.base: requirements/base.txt $(NATIVE) | system-build $(VENV)/bin/python
	$(PIP) install -r requirements/base.txt ./native
	touch $@

$(VENV)/.dev: requirements/dev.txt requirements/base.txt $(NATIVE) | system-build $(VENV)/bin/python
	$(PIP) install -r requirements/dev.txt ./native
	touch $(VENV)/.base $@

$(VENV)/.bench: requirements/bench.txt $(VENV)/.dev
	$(PIP) install -r requirements/bench.txt
	touch $@

# Offline install. On a connected machine, `make wheelhouse` downloads every wheel of
# requirements/ (bench includes dev includes base) for the target: CPython 3.11 on Linux
# x86_64 with glibc up to 2.36 (Debian 12). Inside, `make install-offline` builds .venv
# from wheelhouse/ alone (OFFLINE_REQUIREMENTS=requirements/dev.txt for the tests).
WHEEL_PYTHON ?= 3.11
WHEEL_ARCH ?= x86_64
WHEEL_GLIBC ?= 36
WHEEL_PLATFORMS := manylinux2014_$(WHEEL_ARCH) \
	$(foreach minor,$(shell seq 17 $(WHEEL_GLIBC)),manylinux_2_$(minor)_$(WHEEL_ARCH))
OFFLINE_REQUIREMENTS ?= requirements/base.txt

wheelhouse: | $(VENV)/bin/python
	$(PIP) download --dest wheelhouse \
	  --only-binary=:all: --implementation cp --python-version $(WHEEL_PYTHON) \
	  $(addprefix --platform ,$(WHEEL_PLATFORMS)) -r requirements/bench.txt setuptools
	$(PIP) wheel --no-deps --wheel-dir wheelhouse ./native
	@echo "wheelhouse/: $$(ls wheelhouse/*.whl | wc -l) wheels, $$(du -sh wheelhouse | cut -f1)"

install-offline: | $(VENV)/bin/python
	$(PIP) install --no-index --find-links wheelhouse -r $(OFFLINE_REQUIREMENTS) adu-pgcopy
	touch $(VENV)/.base
	@[ "$(OFFLINE_REQUIREMENTS)" = requirements/base.txt ] || touch $(VENV)/.dev

# Debian packages, installed only when missing.
system-build:
	@command -v gcc >/dev/null 2>&1 && $(PYTHON) -c "import sysconfig, os, sys; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" || { \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) gcc python3-dev; }

system-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) postgresql postgresql-contrib; }

system-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) redis-server; }

system-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) chromium; }

# Debian's docker-compose (1.29) validates docker/compose.yaml; no engine is needed.
system-compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) --no-install-recommends docker-compose; }
