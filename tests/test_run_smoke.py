"""`make run` end to end: the portal and the cluster start together, with the demo source."""

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from connections.localpg import free_port
from tests.factories import ROOT


def wait_for(url, process, seconds=90):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5)
        except OSError:
            assert process.poll() is None, "adu_run stopped"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def var_dir():
    # The demo server runs as the postgres OS user, who cannot enter pytest's private tmp.
    path = Path(tempfile.mkdtemp(prefix="adu-smoke-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_adu_run_serves_the_login_page_and_the_admin_lists_the_demo(tmp_path, var_dir):
    env = {
        **os.environ,
        # Not there yet, as in a fresh checkout: ADU makes it (0700, umask 077), and the
        # demo server, run as the postgres OS user when the tests run as root, still starts.
        "ADU_VAR_DIR": str(var_dir / "var"),
        "ADU_ADMIN_PASSWORD": "smoke-Test-pass-1",
    }
    env.pop("ADU_DATABASE_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port, demo_port = free_port(), free_port()
    log = open(tmp_path / "run.log", "w+")
    run = subprocess.Popen(
        [*manage, "adu_run", "--port", str(port), "--demo-port", str(demo_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        page = wait_for(f"{base}/accounts/login/", run).read().decode()
        assert "Log in" in page
        # whitenoise serves the vendored assets, under their hashed names
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            assert urllib.request.urlopen(base + asset).status == 200, asset
        assert re.search(r'src="/static/adu/htmx\.min\.[0-9a-f]+\.js"', page)

        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        login = opener.open(f"{base}/admin/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        form = {
            "csrfmiddlewaretoken": token,
            "username": "admin",
            "password": "smoke-Test-pass-1",
            "next": "/admin/",
        }
        opener.open(f"{base}/admin/login/", urllib.parse.urlencode(form).encode())
        listing = opener.open(f"{base}/admin/connections/connection/").read().decode()
        assert "Demo PostgreSQL" in listing

        deadline = time.monotonic() + 30
        while "running" not in (tmp_path / "run.log").read_text().lower().split("q cluster")[-1]:
            assert time.monotonic() < deadline, "the task cluster did not start"
            time.sleep(0.5)
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    output = (tmp_path / "run.log").read_text()
    assert "ADU stopped." in output
    assert "smoke-Test-pass-1" not in output
    assert not (var_dir / "demo-pg" / "data" / "postmaster.pid").exists()
