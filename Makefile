# ADU: `make run` starts the portal, the task cluster and a demo source; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q

.PHONY: run test test-fast lint lint-docker bench wheelhouse install-offline \
	system-postgres system-redis system-browser system-compose system-build

run: system-postgres $(VENV)/.base
	$(PY) manage.py migrate --noinput
	$(PY) manage.py adu_run

# The whole suite on SQLite and the ORM broker (what needs no task cluster, browser or
# portal of its own on pytest-xdist workers, the rest in one process), then every test that
# runs jobs (marked `jobs` by conftest.py) again on a throwaway PostgreSQL metadata
# database and redis-server, on 2 workers (each with servers of its own) but for those
# with a cluster, a browser or a portal of their own.
test: system-postgres system-redis system-browser $(VENV)/.dev lint lint-docker
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -m "$(FAST_MARKERS)" -n $(FAST_WORKERS)
	$(PY) -m pytest -m "not ($(FAST_MARKERS))"
	$(PY) -m pytest -p tests.backends --backends postgres-redis -m "jobs and $(FAST_MARKERS)" -n 2
	$(PY) -m pytest -p tests.backends --backends postgres-redis -m "jobs and not ($(FAST_MARKERS))"

# The quick check while working: every test that needs no task cluster, browser or portal
# in other processes (the markers conftest.py sets, see pytest.ini), jobs run in-process
# included, on SQLite and the ORM broker, spread over pytest-xdist workers that each start
# their own throwaway PostgreSQL. Not what CI runs: that is `make test`.
# FAST_WORKERS=0 runs them in one process; PYTEST_ARGS adds options (a path, -x, -k ...).
FAST_WORKERS ?= 4
FAST_MARKERS := not cluster and not browser and not portal
test-fast: system-postgres system-redis $(VENV)/.dev
	$(PY) -m pytest -m "$(FAST_MARKERS)" -n $(FAST_WORKERS) $(PYTEST_ARGS)

# django-stubs loads the settings, which would make (and announce) keys: these are
# throwaway values for the type check alone.
MYPY_KEYS := ADU_SECRET_KEY=$$(printf 'k%.0s' $$(seq 50)) ADU_MASKING_KEY=$$(printf 'm%.0s' $$(seq 32)) \
	ADU_FERNET_KEYS=$$(printf 'f%.0s' $$(seq 43))=

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MYPY_KEYS) $(VENV)/bin/mypy

# No Docker engine runs here: the files are linted, not run (see the README).
lint-docker: $(VENV)/.dev system-compose
	$(VENV)/bin/hadolint docker/Dockerfile
	ADU_ENV_FILE=adu.env.example docker-compose -p adu --env-file docker/adu.env.example \
	  -f docker/compose.yaml config -q

bench: system-postgres $(VENV)/.bench
	$(PY) bench/export_bench.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The locks requirements/{base,dev,bench}.txt pin every package with its hashes, and pip
# installs them with --require-hashes. native/: ADU's binary COPY codec, a C extension
# built here (see its source); it has no hash, so it is installed on its own, built by the
# locked setuptools (--no-build-isolation: no unlocked build dependency is fetched).
NATIVE := native/adu_pgcopy.c native/setup.py native/pyproject.toml
PIP_LOCKED := $(PIP) install --require-hashes -r
PIP_NATIVE := $(PIP) install --no-deps --no-build-isolation ./native

$(VENV)/.base: requirements/base.txt $(NATIVE) | system-build $(VENV)/bin/python
	$(PIP_LOCKED) requirements/base.txt
	$(PIP_NATIVE)
	touch $@

$(VENV)/.dev: requirements/dev.txt requirements/base.txt $(NATIVE) | system-build $(VENV)/bin/python
	$(PIP_LOCKED) requirements/dev.txt
	$(PIP_NATIVE)
	touch $(VENV)/.base $@

$(VENV)/.bench: requirements/bench.txt $(VENV)/.dev
	$(PIP_LOCKED) requirements/bench.txt
	touch $@

# Needs the package index. requirements/*.in are edited by hand; `make lock` compiles them
# with uv (from dev.txt) into the locks for the wheelhouse's target (CPython 3.11 on
# Linux x86_64, glibc 2.36), base first, since dev.in keeps base.txt's versions (-c) and
# bench.in dev.txt's. A version already locked stays unless its .in asks for another:
# LOCK_OPTIONS=--upgrade (or --upgrade-package NAME) moves the rest to the newest.
UV ?= $(VENV)/bin/uv
LOCK_OPTIONS ?=
LOCK = $(UV) pip compile --quiet --generate-hashes --python-version $(WHEEL_PYTHON) \
	--python-platform $(WHEEL_ARCH)-manylinux_2_$(WHEEL_GLIBC) \
	--custom-compile-command "make lock" $(LOCK_OPTIONS)

.PHONY: lock
lock: | $(VENV)/.dev
	$(LOCK) requirements/base.in -o requirements/base.txt
	$(LOCK) requirements/dev.in -o requirements/dev.txt
	$(LOCK) requirements/bench.in -o requirements/bench.txt

# Offline install. On a connected machine, `make wheelhouse` downloads every wheel of
# the locks (bench includes dev includes base), hash-checked, for the target: CPython 3.11
# on Linux x86_64 with glibc up to 2.36 (Debian 12), and builds native/'s wheel. Inside,
# `make install-offline` builds .venv from wheelhouse/ alone, with the same hashes
# (OFFLINE_REQUIREMENTS=requirements/dev.txt for the tests).
WHEEL_PYTHON ?= 3.11
WHEEL_ARCH ?= x86_64
WHEEL_GLIBC ?= 36
WHEEL_PLATFORMS := manylinux2014_$(WHEEL_ARCH) \
	$(foreach minor,$(shell seq 17 $(WHEEL_GLIBC)),manylinux_2_$(minor)_$(WHEEL_ARCH))
OFFLINE_REQUIREMENTS ?= requirements/base.txt

wheelhouse: | $(VENV)/bin/python
	$(PIP) download --dest wheelhouse --require-hashes \
	  --only-binary=:all: --implementation cp --python-version $(WHEEL_PYTHON) \
	  $(addprefix --platform ,$(WHEEL_PLATFORMS)) -r requirements/bench.txt
	$(PIP) wheel --no-deps --wheel-dir wheelhouse ./native
	@echo "wheelhouse/: $$(ls wheelhouse/*.whl | wc -l) wheels, $$(du -sh wheelhouse | cut -f1)"

install-offline: | $(VENV)/bin/python
	$(PIP) install --no-index --find-links wheelhouse --require-hashes -r $(OFFLINE_REQUIREMENTS)
	$(PIP) install --no-index --find-links wheelhouse --no-deps adu-pgcopy
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
