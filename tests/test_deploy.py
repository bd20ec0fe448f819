"""Production pieces: /healthz, the real gunicorn with its config, the container's health
check script, and the broker settings."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from django_q.conf import Conf

from connections.localpg import free_port
from tests.factories import ROOT, database_url

SECRET = "Sekret-Pa55-In-Url"


@pytest.fixture
def orm_broker(monkeypatch):
    # Django-Q2 reads its configuration once: set its Conf, not the settings.
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "REDIS", None)


@pytest.fixture
def redis_broker(monkeypatch):
    def use(url):
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)

    return use


@pytest.mark.django_db
def test_healthz_answers_ok_without_a_login(client, orm_broker):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_healthz_refuses_post(client, orm_broker):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_healthz_names_the_broker_when_the_orm_queue_is_gone(client, orm_broker):
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE django_q_ormq")  # rolled back with the test
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["broker"]}


@pytest.mark.django_db
def test_healthz_pings_redis(client, redis_broker, redis_url):
    redis_broker(redis_url)
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_names_the_broker_when_redis_does_not_answer(client, redis_broker):
    port = free_port()
    redis_broker(f"redis://:{SECRET}@127.0.0.1:{port}/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["broker"]}
    assert str(port) not in response.content.decode()


@pytest.mark.django_db
def test_healthz_names_the_export_root_when_it_cannot_be_written(
    client, orm_broker, settings, tmp_path
):
    (tmp_path / "a-file").write_text("not a folder")
    settings.EXPORT_ROOT = tmp_path / "a-file" / "exports"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["export_root"]}
    assert str(tmp_path) not in response.content.decode()


@pytest.mark.django_db
def test_healthz_leaves_nothing_in_the_export_root(client, orm_broker, export_root):
    client.get("/healthz")
    client.get("/healthz")
    assert export_root.is_dir()
    assert list(export_root.iterdir()) == []


class Gunicorn:
    """The portal as production runs it: gunicorn with adu_site/gunicorn.conf.py."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.env = {**env, "ADU_BIND": f"127.0.0.1:{self.port}", "ADU_WEB_WORKERS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "adu_site/gunicorn.conf.py"]
            + ["adu_site.wsgi"],
            cwd=ROOT,
            env=self.env,
            stdout=open(log_path, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", self.port)) != 0:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def get(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def healthcheck(self):
        """The container's HEALTHCHECK command against this server."""
        return subprocess.run(
            [sys.executable, "docker/healthcheck.py"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def gunicorn(tmp_path):
    started = []

    def start(**env):
        environment = {
            **os.environ,
            "ADU_VAR_DIR": str(tmp_path / "var"),
            "ADU_EXPORT_ROOT": str(tmp_path / "exports"),
            "ADU_ALLOWED_HOSTS": "adu.example.internal,127.0.0.1",
            "ADU_BROKER": "orm",
            "ADU_REDIS_URL": "",
            **env,
        }
        started.append(Gunicorn(environment, tmp_path / f"gunicorn-{len(started)}.log"))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_healthz_and_logs_no_query_string(gunicorn):
    server = gunicorn(ADU_DATABASE_URL=database_url(connection.settings_dict))
    status, body = server.get(f"/healthz?token={SECRET}&x=1")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    check = server.healthcheck()
    assert check.returncode == 0, check.stdout + check.stderr
    server.stop()
    log = server.log()
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert SECRET not in log and "token=" not in log


def test_gunicorn_healthz_names_the_database_without_saying_where_it_is(gunicorn):
    port = free_port()
    server = gunicorn(ADU_DATABASE_URL=f"postgres://adu:{SECRET}@127.0.0.1:{port}/adu")
    status, body = server.get("/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    # The ORM broker is a table of that same database: it is down with it.
    assert answer["failed"] == ["database", "broker"]
    for detail in (SECRET, str(port), "127.0.0.1", "psycopg", "rror", "adu"):
        assert detail not in body
    check = server.healthcheck()
    assert check.returncode == 1
    server.stop()
    assert SECRET not in server.log()


def test_a_redis_url_password_is_redacted_from_logs():
    from adu_site.redaction import redact

    assert redact(f"broker redis://:{SECRET}@broker:6379/0 down") == (
        "broker redis://:[redacted]@broker:6379/0 down"
    )


def manage_check(tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("ADU_BROKER", "ADU_REDIS_URL")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**environment, "ADU_VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "env, sentence",
    [
        ({"ADU_BROKER": "kafka"}, "ADU_BROKER must be 'orm' or 'redis'."),
        ({"ADU_BROKER": "redis"}, "ADU_BROKER=redis needs ADU_REDIS_URL"),
        (
            {"ADU_BROKER": "redis", "ADU_REDIS_URL": f"http://u:{SECRET}@h/0"},
            "ADU_BROKER=redis needs ADU_REDIS_URL",
        ),
        ({"ADU_REDIS_URL": f"redis://:{SECRET}@h:6379/0"}, "ADU_REDIS_URL is set but"),
    ],
)
def test_a_bad_broker_setting_stops_startup_with_one_sentence(tmp_path, env, sentence):
    result = manage_check(tmp_path, **env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"ADU cannot start: {sentence}")
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr


def test_the_redis_broker_is_chosen_by_settings_alone(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django_q.conf import Conf; print(Conf.ORM, Conf.REDIS, Conf.QUEUE_LIMIT)",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "ADU_VAR_DIR": str(tmp_path / "var"),
            "ADU_BROKER": "Redis",
            "ADU_REDIS_URL": "redis://:pw@broker.internal:6379/0",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.split() == ["None", "redis://:pw@broker.internal:6379/0", "1"]
