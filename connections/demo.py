"""The demo source of `make run`: a local PostgreSQL under var/ with a small data set."""

import os
import secrets
import stat
from pathlib import Path

from django.conf import settings
from psycopg2 import sql

from connections.localpg import LocalPostgres
from connections.models import Connection

DEMO_CONNECTION = "Demo PostgreSQL"
DEMO_DATABASE = "demo"
DEMO_USER = "adu_demo"
# The far side's database of the demo, on the same server: a load target (adu_load).
DEMO_TARGET = "Demo target"
DEMO_TARGET_DATABASE = "demo_far"
DEMO_TARGET_USER = "adu_far"
DEMO_PORT = 54329


def start_demo(owner, port: int = DEMO_PORT) -> tuple[LocalPostgres, Connection]:
    """Start (creating on first run) the demo server and make its connection work for `owner`."""
    if os.geteuid() == 0:
        # Run by root, the server runs as the postgres OS user, who must pass through var/:
        # ADU makes it 0700 (umask 077). Passing through is all it gets: what var/ holds
        # is 0600 and 0700 itself, and its names cannot be listed.
        var = Path(settings.VAR_DIR)
        var.mkdir(parents=True, exist_ok=True)
        var.chmod(stat.S_IMODE(var.stat().st_mode) | 0o001)
    pg = LocalPostgres(settings.VAR_DIR / "demo-pg", port=port).ensure_started()
    password = secrets.token_urlsafe(18)
    _database_with_owner(pg, DEMO_DATABASE, DEMO_USER, password)
    demo = psycopg2_connect_as(pg, password)
    with demo.cursor() as cur:
        cur.execute((Path(__file__).parent / "demo.sql").read_text())
    demo.close()
    connection = _connection(owner, DEMO_CONNECTION, pg, DEMO_DATABASE, DEMO_USER, password)
    far_password = secrets.token_urlsafe(18)
    _database_with_owner(pg, DEMO_TARGET_DATABASE, DEMO_TARGET_USER, far_password)
    _connection(owner, DEMO_TARGET, pg, DEMO_TARGET_DATABASE, DEMO_TARGET_USER, far_password, True)
    return pg, connection


def _database_with_owner(pg: LocalPostgres, database: str, user: str, password: str):
    """The role (with this password) and its database, made on first run."""
    admin = pg.connect()
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user])
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)),
            [password],
        )
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if not cur.fetchone():
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(user)
                )
            )
    admin.close()


def _connection(owner, name, pg, database, user, password, target=False) -> Connection:
    connection, _ = Connection.objects.update_or_create(
        owner=owner,
        name=name,
        defaults={
            "kind": Connection.Kind.POSTGRESQL,
            "host": "127.0.0.1",
            "port": pg.port,
            "database": database,
            "username": user,
            "password": password,
            "sslmode": Connection.SSLMode.DISABLE,
            "is_target": target,
        },
    )
    return connection


def psycopg2_connect_as(pg: LocalPostgres, password: str):
    import psycopg2

    conn = psycopg2.connect(pg.dsn(DEMO_DATABASE, user=DEMO_USER, password=password))
    conn.autocommit = True
    return conn
