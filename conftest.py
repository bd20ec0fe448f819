"""Test harness: a throwaway PostgreSQL source server per session, a fresh database per test,
and real `manage.py qcluster` task clusters.

Set ADU_TEST_PG_DSN (a superuser DSN) to use an existing server instead. Tests that run
export jobs are marked `jobs`; `make test` runs them a second time on PostgreSQL metadata
and the Redis broker (`-p tests.backends --backends postgres-redis`, see tests/backends.py).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from connections.localpg import LocalPostgres
from tests.factories import ROOT, SourceServer, database_url, throwaway_database, user_with_role

# The browser fixture lives beside its helpers, for every browser test module.
pytest_plugins = ["tests.browser"]

# What makes a test a job test: it runs export jobs, in this process or on a cluster.
JOB_FIXTURES = {"export", "clusters", "cluster_env"}
JOB_FOLDERS = [Path(__file__).resolve().parent / "exports"]
# The slow kinds `make test-fast` leaves out (markers in pytest.ini): task clusters
# (`manage.py qcluster` subprocesses), the portal served from other processes or a thread
# (adu_run, gunicorn, pytest-django's live_server), and the browser.
CLUSTER_FIXTURES = {"clusters", "cluster_env"}
PORTAL_FIXTURES = {"live_server", "gunicorn"}
PORTAL_MODULES = [Path(__file__).resolve().parent / "tests" / "test_run_smoke.py"]  # `make run`
BROWSER_FIXTURES = {"browser_page"}


# The checkout's var/ is `make run`'s. The tests write theirs (SQLite database, job logs,
# exports) to this throwaway folder instead, removed at the end: a test's job 1 must never
# append to the portal's job-1 log, nor the portal show a test's files.
TEST_VAR_DIR = Path(tempfile.mkdtemp(prefix="adu-test-var-"))


def pytest_configure(config):
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
        fixtures = set(getattr(item, "fixturenames", ()))
        in_folder = any(item.path.is_relative_to(folder) for folder in JOB_FOLDERS)
        if in_folder or JOB_FIXTURES & fixtures:
            item.add_marker(pytest.mark.jobs)
        if CLUSTER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.cluster)
        if PORTAL_FIXTURES & fixtures or item.path in PORTAL_MODULES:
            item.add_marker(pytest.mark.portal)
        if BROWSER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.browser)


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


@pytest.fixture
def source_db(source_server):
    with throwaway_database(source_server) as db:
        yield db


@pytest.fixture
def target_db(source_server):
    """A second database on the source's server: where loads write."""
    with throwaway_database(source_server) as db:
        yield db


@pytest.fixture
def target(target_db, owner):
    """The owner's connection to target_db, marked as a load target."""
    return target_db.connection(owner, name="far", is_target=True)


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
    settings.RECEIVE_ROOT = tmp_path / "received"
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
        "ADU_RECEIVE_ROOT": str(settings.RECEIVE_ROOT),
        "ADU_JOB_LOG_DIR": str(tmp_path / "logs"),
        "ADU_HEARTBEAT_TIMEOUT": "6",
        "ADU_WORKERS": "3",
    }


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
