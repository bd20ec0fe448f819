"""What ADU writes is for ADU's user alone (issue 17, point 8e): every entry point runs
under umask 077 (set in adu_site/__init__.py), so files are 0600 and folders 0700."""

import os
import stat
import subprocess
import sys

import pytest

from exports.joblog import log_path
from tests.factories import ROOT


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def test_this_process_runs_under_umask_077():
    assert _umask() == 0o077


def test_manage_py_and_gunicorns_config_set_umask_077(tmp_path):
    # Started with the usual 022 (not this process's 077, which children would inherit).
    # The command line, the task cluster (a manage.py command; its workers inherit it)...
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", "import os; print(oct(os.umask(0)))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ADU_VAR_DIR": str(tmp_path / "var")},
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip().splitlines()[-1] == "0o77"
    # ...and the portal: gunicorn reads its config file before it forks the workers.
    portal = subprocess.run(
        [sys.executable, "-c",
         "import os, runpy; os.umask(0o022); runpy.run_path('adu_site/gunicorn.conf.py');"
         " print(oct(os.umask(0)))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert portal.stdout.strip() == "0o77", portal.stderr


@pytest.mark.django_db(transaction=True)
def test_an_exports_files_and_folders_are_0600_and_0700(
    owner, source_db, export, settings, tmp_path
):
    settings.JOB_LOG_DIR = tmp_path / "logs"
    source_db.execute("CREATE SCHEMA s; CREATE TABLE s.t AS SELECT generate_series(1, 50) AS i")
    job = export(source_db.connection(owner), tables=["s.t"], max_file_mb=1)
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    folder = job.folder()
    written = [folder, *folder.rglob("*"), settings.JOB_LOG_DIR, *settings.JOB_LOG_DIR.iterdir()]
    files = [p for p in written if p.is_file()]
    assert {p.name for p in files} >= {"manifest.json", log_path(job).name}
    assert any(p.suffix == ".parquet" for p in files)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
