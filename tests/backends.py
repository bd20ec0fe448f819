"""The tests' metadata database and broker: production's PostgreSQL and Redis on demand.

By default the tests run on SQLite and the ORM broker. As a pytest plugin,

    .venv/bin/python -m pytest -p tests.backends --backends postgres-redis -m jobs

starts a throwaway PostgreSQL server (metadata, and the tests' source server too) and a
throwaway redis-server (broker), both on 127.0.0.1 in temporary folders, points
ADU_DATABASE_URL, ADU_BROKER and ADU_REDIS_URL at them before pytest-django loads the
settings, and stops and removes them at the end. On pytest-xdist workers (-n N), each
worker has servers of its own. `make test` runs the job tests this way
after the whole suite. `LocalRedis` also serves single tests that need a Redis server.
"""

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from connections.localpg import LocalPostgres, free_port

MODES = ("sqlite-orm", "postgres-redis")


class LocalRedisError(Exception):
    pass


class LocalRedis:
    """One redis-server on 127.0.0.1 with a password, nothing saved to disk.

    As root it runs as Debian's `redis` user, as PostgreSQL runs as `postgres`.
    """

    def __init__(self, root: Path | None = None, port: int | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="adu-test-redis-")).resolve()
        self.port = port or free_port()
        self.password = secrets.token_hex(16)
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self) -> "LocalRedis":
        server = shutil.which("redis-server")
        if not server:
            raise LocalRedisError(
                "redis-server was not found; install the Debian package 'redis-server' "
                "(the Makefile does this)."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "redis.conf"
        # The password goes in a file, not on a command line that `ps` shows.
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\n"
            f'requirepass {self.password}\ndir {self.root}\nsave ""\nappendonly no\n'
            f"logfile {self.root / 'redis.log'}\n"
        )
        command = [server, str(config)]
        if os.geteuid() == 0 and _user_exists("redis"):
            shutil.chown(self.root, "redis", "redis")
            shutil.chown(config, "redis", "redis")
            config.chmod(0o600)
            command = ["runuser", "-u", "redis", "--", *command]
        self.process = subprocess.Popen(
            command,
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the server and runuser share a group: stopped at once
        )
        self._wait_until_ready()
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_until_ready(self, seconds: float = 15):
        import redis

        client = redis.from_url(self.url(), socket_connect_timeout=1)
        deadline = time.monotonic() + seconds
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = self.root / "redis.log"
                        tail = log.read_text()[-1000:] if log.exists() else ""
                        self.stop()
                        raise LocalRedisError(f"redis-server did not start: {tail}") from None
                    time.sleep(0.1)
        finally:
            client.close()


class Backends:
    """The PostgreSQL server and redis-server of a postgres-redis run."""

    def __init__(self):
        self.postgres = LocalPostgres(
            Path(tempfile.mkdtemp(prefix="adu-test-metadata-pg-")), fast_unsafe=True
        )
        self.redis = LocalRedis()

    def start(self):
        try:
            self.postgres.ensure_started()
            self.redis.start()
        except Exception:
            self.stop()
            raise
        password = quote(self.postgres.password, safe="")
        os.environ["ADU_DATABASE_URL"] = (
            f"postgres://postgres:{password}@127.0.0.1:{self.postgres.port}/adu"
        )
        os.environ["ADU_BROKER"] = "redis"
        os.environ["ADU_REDIS_URL"] = self.redis.url()
        # Source databases live on the same server: one server fewer to start.
        os.environ.setdefault("ADU_TEST_PG_DSN", self.postgres.dsn())
        return self

    def stop(self):
        self.redis.stop()
        self.postgres.destroy()


def pytest_addoption(parser):
    parser.addoption(
        "--backends",
        choices=MODES,
        default=os.environ.get("ADU_TEST_BACKENDS", "sqlite-orm"),
        help="Metadata database and broker of the tests: sqlite-orm (default) or "
        "postgres-redis (throwaway servers started for the run).",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # tryfirst: before pytest-django's own hook, which reads the settings.
    if early_config.known_args_namespace.backends != "postgres-redis":
        return
    if getattr(early_config.known_args_namespace, "numprocesses", None) and not os.environ.get(
        "PYTEST_XDIST_WORKER"
    ):
        return  # pytest-xdist's controller runs no test: each worker starts its own servers
    backends = Backends().start()
    stopped = []

    def stop():
        if not stopped:
            stopped.append(True)
            backends.stop()

    early_config.add_cleanup(stop)
    atexit.register(stop)  # also when pytest dies before its own clean-up


def pytest_configure(config):
    if config.getoption("backends") == "postgres-redis":
        # The whole server is removed at the end: dropping the test database first would
        # only wait on sessions that stray threads or killed clusters left behind.
        config.option.reuse_db = True


def pytest_report_header(config):
    return f"backends: {config.getoption('backends')}"


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
