"""Start-up stays light: Django's apps, the commands and the portal's URLs load without the
libraries only an export needs (they cost most of a command's start-up time), and the
commands start without those only part of their work needs (issue 20: under 0.4 s)."""

import io
import json
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.factories import ROOT

HEAVY = ("pyarrow", "polars", "pandera", "numpy", "pglast")

PROBE = f"""
import json, sys
import django
django.setup()
from django.core.management import get_commands, load_command_class
loaded = {{}}
for name, app in sorted(get_commands().items()):
    if name.startswith("adu_"):
        load_command_class(app, name)
loaded["commands"] = sorted(m for m in {HEAVY!r} if m in sys.modules)
import adu_site.urls
loaded["portal"] = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps(loaded))
"""

# Nor, until they are used, what a command's --help and the system checks it runs first
# need not: pydantic (0.1 s: exports.options makes ExportOptions on first use), django-ninja
# (the API, which the URLs' checks would import: 0.3 s with pydantic) and cryptography
# (10 ms: for stored secrets only).
LATER = ("pydantic", "ninja", "cryptography")

START_PROBE = f"""
import contextlib, io, json, sys
from django.core.management import execute_from_command_line, load_command_class
def started(args):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            execute_from_command_line(["manage.py", *args])
        except SystemExit:
            pass
    return sorted(m for m in {LATER!r} if m in sys.modules)
# One after the other in one process: each step names what it added to those before.
loaded = {{"adu_jobs --help": started(["adu_jobs", "--help"])}}
command = load_command_class("exports", "adu_jobs")
command.check(**command.get_check_kwargs({{}}))  # what it runs before listing the jobs
loaded["adu_jobs's checks"] = sorted(m for m in {LATER!r} if m in sys.modules)
loaded["adu_export --help"] = started(["adu_export", "--help"])
print(json.dumps(loaded))
"""


def probe(code: str, **env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "adu_site.test_settings", "PATH": "/usr/bin:/bin", **env},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_commands_and_pages_start_without_the_export_libraries():
    assert probe(PROBE) == {"commands": [], "portal": []}


SPAWN_PROBE = f"""
import json, sys
import django
django.setup()
before = sorted(m for m in {HEAVY!r} if m in sys.modules)
from django_q.signals import post_spawn
post_spawn.send(sender="django_q", proc_name="Process-1")
after = sorted(m for m in {HEAVY!r} if m in sys.modules)
drivers = [m for m in ("connections.drivers.postgresql", "connections.drivers.vertica")
           if m in sys.modules]
print(json.dumps({{"before": before, "after": after, "drivers": drivers}}))
"""


def test_a_cluster_worker_loads_the_engine_as_it_starts():
    # Django-Q2 sends post_spawn in each worker process it starts.
    assert probe(SPAWN_PROBE) == {
        "before": [],
        "after": ["numpy", "pandera", "pglast", "polars", "pyarrow"],
        "drivers": ["connections.drivers.postgresql", "connections.drivers.vertica"],
    }


def test_commands_start_without_pydantic_ninja_or_cryptography(tmp_path):
    # Keys given, as in production: a first run makes its Fernet key with cryptography.
    loaded = probe(
        START_PROBE, ADU_VAR_DIR=str(tmp_path), ADU_FERNET_KEYS=Fernet.generate_key().decode()
    )
    assert loaded == {"adu_jobs --help": [], "adu_jobs's checks": [], "adu_export --help": []}


@pytest.fixture
def failing_check():
    """Registers a system check with the given tag that reports an error, for one test."""
    registered = []

    def register(tag):
        def check(app_configs=None, **kwargs):
            return [checks.Error(f"A broken {tag} check.", id="tests.E001")]

        registered.append(checks.register(check, tag))

    yield register
    for check in registered:
        checks.registry.registry.registered_checks.discard(check)


@pytest.mark.django_db
def test_the_commands_skip_the_urls_checks_alone(owner, failing_check):
    def adu_jobs():
        out = io.StringIO()
        call_command("adu_jobs", "--as", "owner", skip_checks=False, stdout=out)
        return out.getvalue()

    failing_check(checks.Tags.urls)
    assert "No jobs." in adu_jobs()
    failing_check(checks.Tags.models)
    with pytest.raises(SystemCheckError, match="A broken models check"):
        adu_jobs()
