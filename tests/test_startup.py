"""Start-up stays light: Django's apps, the commands and the portal's URLs load without the
libraries only an export needs (they cost most of a command's start-up time)."""

import json
import subprocess
import sys

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


def test_commands_and_pages_start_without_the_export_libraries():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "adu_site.test_settings", "PATH": "/usr/bin:/bin"},
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"commands": [], "portal": []}
