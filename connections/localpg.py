"""A local PostgreSQL server in a folder of its own: the demo source and the tests' source.

PostgreSQL refuses to run as root, so when we are root every server command runs as the
`postgres` OS user, which then owns the folder.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg2

SUPERUSER = "postgres"


class LocalPostgresError(Exception):
    pass


def bindir() -> Path:
    """The folder of the newest installed PostgreSQL server binaries."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise LocalPostgresError(
        "PostgreSQL server binaries were not found; install the Debian package "
        "'postgresql' (the Makefile does this)."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalPostgres:
    """One server: `root/data`, `root/server.log`, its socket in `root`, TCP on 127.0.0.1 only."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        fast_unsafe: bool = False,
        settings: dict[str, str] | None = None,
    ):
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.port = port or free_port()
        # fsync off makes a throwaway test cluster quick; never for data someone keeps.
        self.fast_unsafe = fast_unsafe
        self.password_file = self.root / "superuser_password"
        self.settings = settings or {}  # more server settings, e.g. {"ssl": "on"}

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None):
        password = self.password if password is None else password
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} password={password}"

    def connect(self, dbname: str = "postgres"):
        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = True
        return conn

    def ensure_started(self) -> "LocalPostgres":
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if not self.is_running():
            if port_in_use(self.port):
                raise LocalPostgresError(
                    f"Port {self.port} on 127.0.0.1 is already in use; stop what listens "
                    "there or choose another port."
                )
            self._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(self.root / "server.log"),
                "-o",
                self._server_options(),
            )
        return self

    def is_running(self) -> bool:
        result = self._run([str(bindir() / "pg_ctl"), "status", "-D", str(self.data)], check=False)
        return result.returncode == 0

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w", check=False)

    def destroy(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _initdb(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(secrets.token_urlsafe(24))
        self.password_file.chmod(0o600)
        pwfile = self.root / "initdb_pw"
        pwfile.write_text(self.password)
        self._hand_over(self.root)
        if self._run(["test", "-w", str(self.root)], check=False).returncode != 0:
            raise LocalPostgresError(
                f"The postgres OS user cannot write to {self.root}; choose a folder whose "
                "parents it may enter."
            )
        try:
            self._run(
                [
                    str(bindir() / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink()

    def _server_options(self) -> str:
        options = [
            f"-p {self.port}",
            f"-k {self.root}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        return " ".join(options)

    def _pg_ctl(self, *args, check=True):
        return self._run([str(bindir() / "pg_ctl"), "-D", str(self.data), *args], check=check)

    def _run(self, command, check=True):
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise LocalPostgresError(
                f"{' '.join(command[:4])} failed: {result.stderr.strip()} {tail}".strip()
            )
        return result

    def _hand_over(self, path: Path):
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
            for child in path.iterdir():
                shutil.chown(child, "postgres", "postgres")
