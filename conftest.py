"""Test harness: a throwaway PostgreSQL source server per session, a fresh database per test,
and real `manage.py qcluster` task clusters.

Set ADU_TEST_PG_DSN (a superuser DSN) to use an existing server instead. Tests that run
export jobs are marked `jobs`; `make test` runs them a second time on PostgreSQL metadata
and the Redis broker (`-p tests.backends --backends postgres-redis`, see tests/backends.py).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import pytest

from connections.localpg import LocalPostgres

# The browser fixture lives beside its helpers, for every browser test module.
pytest_plugins = ["tests.browser"]

# What makes a test a job test: it runs export jobs, in this process or on a cluster.
JOB_FIXTURES = {"export", "clusters", "cluster_env"}
JOB_FOLDERS = [Path(__file__).resolve().parent / "exports"]


# The checkout's var/ is `make run`'s. The tests write theirs (SQLite database, job logs,
# exports) to this throwaway folder instead, removed at the end: a test's job 1 must never
# append to the portal's job-1 log, nor the portal show a test's files.
TEST_VAR_DIR = Path(tempfile.mkdtemp(prefix="adu-test-var-"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "jobs: runs export jobs (make test runs these on PostgreSQL and Redis too)"
    )
    _keep_out_of_the_checkouts_var()


def pytest_unconfigure(config):
    shutil.rmtree(TEST_VAR_DIR, ignore_errors=True)


def _keep_out_of_the_checkouts_var():
    """Point every var/ path of the settings, and of the processes the tests start (task
    clusters, manage.py), at TEST_VAR_DIR. pytest-django has loaded the settings before
    any conftest runs, so the paths are set on them here; the keys they read are copied,
    so that a cluster decrypts what this process encrypted."""
    from django.conf import settings

    settings.VAR_DIR = TEST_VAR_DIR
    settings.EXPORT_ROOT = TEST_VAR_DIR / "exports"
    settings.JOB_LOG_DIR = TEST_VAR_DIR / "logs" / "jobs"
    settings.STATIC_ROOT = TEST_VAR_DIR / "static"
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["TEST"]["NAME"] = str(TEST_VAR_DIR / "adu.test.sqlite3")
    for name, value in (
        ("secret_key", settings.SECRET_KEY),
        ("fernet_keys", ",".join(settings.FERNET_KEYS)),
        ("masking_key", settings.MASKING_KEY),
    ):
        fd = os.open(TEST_VAR_DIR / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as secret:
            secret.write(value)
    os.environ["ADU_VAR_DIR"] = str(TEST_VAR_DIR)
    os.environ["ADU_EXPORT_ROOT"] = str(settings.EXPORT_ROOT)
    os.environ["ADU_JOB_LOG_DIR"] = str(settings.JOB_LOG_DIR)


def pytest_collection_modifyitems(items):
    for item in items:
        in_folder = any(item.path.is_relative_to(folder) for folder in JOB_FOLDERS)
        if in_folder or JOB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.jobs)


class SourceServer:
    """Where test source databases live: host, port and a superuser."""

    def __init__(self, dsn: str):
        self.params = psycopg2.extensions.parse_dsn(dsn)
        self.host = self.params.get("host", "127.0.0.1")
        self.port = int(self.params.get("port", 5432))
        self.user = self.params.get("user", "postgres")
        self.password = self.params.get("password", "")

    def connect(self, dbname="postgres", **overrides):
        params = {**self.params, "dbname": dbname, **overrides}
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        return conn


class SourceDatabase:
    """One empty database on the source server, for one test."""

    def __init__(self, server: SourceServer, name: str):
        self.server = server
        self.name = name
        self._conn = server.connect(name)

    def execute(self, query, params=None):
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def connection(self, owner, name="source", **overrides):
        """A saved Connection that points at this database as the superuser."""
        from connections.models import Connection

        fields = {
            "kind": "postgresql",
            "host": self.server.host,
            "port": self.server.port,
            "database": self.name,
            "username": self.server.user,
            "password": self.server.password,
            "sslmode": "disable",
            "connect_timeout": 5,
            **overrides,
        }
        return Connection.objects.create(owner=owner, name=name, **fields)

    def close(self):
        self._conn.close()


@pytest.fixture(scope="session")
def source_server():
    dsn = os.environ.get("ADU_TEST_PG_DSN")
    if dsn:
        yield SourceServer(dsn)
        return
    pg = LocalPostgres(Path(tempfile.mkdtemp(prefix="adu-test-pg-")), fast_unsafe=True)
    try:
        pg.ensure_started()
        yield SourceServer(pg.dsn())
    finally:
        pg.destroy()


@contextlib.contextmanager
def throwaway_database(server: SourceServer, options: str = "", force_drop: bool = True):
    """A new database on the server for one test (`options`: CREATE DATABASE's), dropped
    after it (with its sessions, where the server can: Greenplum cannot FORCE)."""
    name = f"adu_test_{uuid.uuid4().hex[:12]}"
    admin = server.connect()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" {options}')
    db = SourceDatabase(server, name)
    try:
        yield db
    finally:
        db.close()
        with admin.cursor() as cur:
            cur.execute(
                f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force_drop else "")
            )
        admin.close()


@pytest.fixture
def source_db(source_server):
    with throwaway_database(source_server) as db:
        yield db


def user_with_role(django_user_model, username: str, role: str, password: str = ""):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(
        username, password=password or f"{username}-pass-123"
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def role_cast(django_user_model, source_db, tables=("public.t",)):
    """The people of the role matrices, the connection they share and one finished job.

    `owner` (ADU Operator) owns a connection shared with the group "analysts", of which
    `mate` (Operator) and `reader` (Viewer) are members; `stranger` (Operator) and
    `onlooker` (Viewer) are not; `boss` is an ADU Admin by group (not a superuser);
    `nobody` has no role. Returns (people by name, connection, job).
    """
    from django.contrib.auth.models import Group

    from exports.engine.run import run_job
    from exports.jobs import create_job

    analysts = Group.objects.create(name="analysts")
    roles = {
        "boss": "ADU Admin", "owner": "ADU Operator", "mate": "ADU Operator",
        "reader": "ADU Viewer", "stranger": "ADU Operator", "onlooker": "ADU Viewer",
    }  # fmt: skip
    people = {name: user_with_role(django_user_model, name, role) for name, role in roles.items()}
    people["nobody"] = django_user_model.objects.create_user("nobody", password="nobody-pass-123")
    for name in ("owner", "mate", "reader"):
        people[name].groups.add(analysts)
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    connection = source_db.connection(people["owner"], name="warehouse")
    connection.shared_with.add(analysts)
    job = run_job(create_job(people["owner"], connection, tables=list(tables)).pk)
    return people, connection, job


@pytest.fixture
def owner(django_user_model):
    """An ADU Operator who owns the connections and jobs of a test."""
    return user_with_role(django_user_model, "owner", "ADU Operator")


@pytest.fixture
def outsider(django_user_model):
    """Another ADU Operator, who shares nothing with `owner`."""
    return user_with_role(django_user_model, "outsider", "ADU Operator")


@pytest.fixture
def viewer(django_user_model):
    """An ADU Viewer."""
    return user_with_role(django_user_model, "viewer", "ADU Viewer")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password="root-pass-123")


@pytest.fixture(autouse=True)
def export_root(tmp_path, settings):
    """Each test's own export root and log folder: the files of one test's job 1 are not
    those of another's."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.JOB_LOG_DIR = tmp_path / "logs"
    return settings.EXPORT_ROOT


@pytest.fixture(autouse=True)
def static_without_collectstatic(settings):
    # Tests serve static files from the source folders, with no manifest to build first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True


@pytest.fixture
def export(owner):
    """Run an export job in this process: export(connection, tables=[...], **options) -> job."""
    from exports.engine.run import run_job
    from exports.jobs import create_job

    def run(connection, tables=(), schemas=(), out="", **options):
        job = create_job(
            owner, connection, schemas=schemas, tables=tables, options=options, out=out
        )
        return run_job(job.pk)

    return run


@pytest.fixture
def stored_token():
    """stored_token(connection_pk): the password column as stored, read without the model."""
    from django.db import connection as db

    def read(pk):
        with db.cursor() as cursor:
            cursor.execute("SELECT password FROM connections_connection WHERE id = %s", [pk])
            return cursor.fetchone()[0]

    return read


ROOT = Path(__file__).resolve().parent


class Cluster:
    def __init__(self, env, log):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its worker processes share its group: killable at once
        )

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any worker left behind
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def cluster_env(settings, tmp_path, export_root):
    """The environment of a cluster that shares this test's database and folders."""
    from django.db import connection as django_db

    settings.JOB_LOG_DIR = tmp_path / "logs"
    settings.HEARTBEAT_TIMEOUT = 6
    return {
        **os.environ,
        "ADU_DATABASE_URL": database_url(django_db.settings_dict),
        "ADU_EXPORT_ROOT": str(export_root),
        "ADU_JOB_LOG_DIR": str(tmp_path / "logs"),
        "ADU_HEARTBEAT_TIMEOUT": "6",
        "ADU_WORKERS": "3",
    }


def database_url(db: dict) -> str:
    """The ADU_DATABASE_URL of the test database, for the processes a test starts."""
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user, password = quote(db["USER"], safe=""), quote(db["PASSWORD"], safe="")
    return f"postgres://{user}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="session")
def redis_url():
    """The URL of a redis-server: the run's broker under postgres-redis, else a throwaway one."""
    if os.environ.get("ADU_BROKER") == "redis":
        yield os.environ["ADU_REDIS_URL"]
        return
    from tests.backends import LocalRedis

    server = LocalRedis().start()
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture
def clusters(cluster_env, tmp_path, settings):
    """clusters(**env) starts one more `manage.py qcluster`; all are stopped after the test."""
    started = []
    if settings.Q_CLUSTER.get("redis"):
        # Tasks an earlier test queued and never ran would reach this test's clusters: the
        # ORM broker's queue is a table that the test database empties, Redis's is not.
        import redis

        client = redis.from_url(settings.Q_CLUSTER["redis"])
        client.flushdb()
        client.close()

    def start(**env):
        log = open(tmp_path / f"cluster-{len(started)}.log", "w")
        started.append(Cluster({**cluster_env, **env}, log))
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()
