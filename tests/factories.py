"""What the tests share besides fixtures: plain functions, classes and data. No test module
imports another one, nor a conftest (tests/test_import_graph.py checks it); the fixtures
are in conftest.py (the root one, and tests/conftest.py for tests/), which import from here.

The source server and its throwaway databases, users by role, the project's manage.py,
the canary database of the source-safety attacks (canary_fixtures makes a module's own),
the table of every PostgreSQL type, waiting on task clusters, a socket that catches
passwords, and the data of the connection and rule forms.
"""

import contextlib
import html
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.urls import reverse

from api.models import ApiToken
from api.tests.helpers import error_of, post_json
from connections.models import Connection, SavedQuery, SensitiveColumn
from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob

# -- The project ---------------------------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent


def manage(tmp_path, *args, **env):
    environment = {**os.environ, "ADU_VAR_DIR": str(tmp_path / "var"), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def database_url(db: dict) -> str:
    """The ADU_DATABASE_URL of the test database, for the processes a test starts."""
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user, password = quote(db["USER"], safe=""), quote(db["PASSWORD"], safe="")
    return f"postgres://{user}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


# -- Source databases ----------------------------------------------------------------------


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


# -- People --------------------------------------------------------------------------------


def user_with_role(django_user_model, username: str, role: str, password: str = ""):
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


# -- The canary database of the source-safety attacks --------------------------------------


CANARY_ROWS = [
    (1, "CANARY-7F3A-ALPHA", "11.50"),
    (2, "CANARY-7F3A-BRAVO", "22.25"),
    (3, "CANARY-7F3A-CHARLIE", None),
]
SETUP = """
CREATE TABLE people (
    id integer PRIMARY KEY, name text NOT NULL, ssn text, salary numeric(10,2), email text
);
INSERT INTO people
SELECT i, 'Person-' || (4100 + i), 'SSN-' || (731000 + i), 52000 + i * 1.25,
       'p' || i || '@example.org'
FROM generate_series(1, 40) i;
CREATE TABLE canary (id integer PRIMARY KEY, secret text NOT NULL, amount numeric);
INSERT INTO canary VALUES (1, 'CANARY-7F3A-ALPHA', 11.50), (2, 'CANARY-7F3A-BRAVO', 22.25),
                          (3, 'CANARY-7F3A-CHARLIE', NULL);
CREATE VIEW people_view AS SELECT id, ssn AS code FROM people;
CREATE SEQUENCE counter;
-- Traps: each tries to write to the canary (a read-only session refuses, and the trap
-- swallows that so that its call is counted) and returns as the built-in would.
CREATE FUNCTION public.lower(text) RETURNS text VOLATILE LANGUAGE plpgsql AS $$
BEGIN
    BEGIN INSERT INTO canary VALUES (100, 'lower was called', 0);
    EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN pg_catalog.lower($1);
END $$;
CREATE FUNCTION public.noisy() RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN
    BEGIN DELETE FROM canary; EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN true;
END $$;
CREATE FUNCTION public.text_eq_int(text, integer) RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN
    BEGIN UPDATE canary SET secret = 'operator was called';
    EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN false;
END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_eq_int);
CREATE OPERATOR public.>= (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_eq_int);
CREATE OPERATOR public.<= (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_eq_int);
CREATE OPERATOR public.~~ (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_eq_int);
-- This one says what it read, as a function that fails can: into the error message.
CREATE FUNCTION public.text_ne_int(text, integer) RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'read: %', (SELECT string_agg(secret, ' ') FROM canary); END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_ne_int);
"""
TRAPS = ("lower", "noisy", "text_eq_int", "text_ne_int")
# What must never appear in a refusal: values of the canary and of people.
SOURCE_VALUES = re.compile(r"CANARY-7F3A|SSN-731\d+|Person-41\d\d|p\d+@example\.org|5\d{4}\.\d\d")


class Canary:
    """The canary database: its content and its write counters, before and after."""

    def __init__(self, db):
        self.db = db
        self.server = db.server
        [(self.own_pid,)] = db.execute("SELECT pg_backend_pid()")
        self.before = None
        self.pristine = self.content()

    def content(self):
        return (
            self.db.execute("SELECT id, secret, amount::text FROM canary ORDER BY id"),
            self.db.execute("SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM people p"),
            self.db.execute("SELECT last_value, is_called FROM counter"),
            self.db.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public'"
            ),
        )

    def counters(self):
        """Inserts, updates and deletes per table (attempted ones too, as PostgreSQL counts
        them) and calls per trap, once every other session of the database has ended
        (a backend's statistics reach the shared ones as it exits)."""
        conn = self.server.connect(self.db.name)
        try:
            with conn.cursor() as cur:
                deadline = time.monotonic() + 15
                while True:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND backend_type = 'client backend' "
                        "AND pid <> ALL(ARRAY[pg_backend_pid(), %s])",
                        [self.own_pid],
                    )
                    if cur.fetchone()[0] == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                    "WHERE relname IN ('canary', 'people') ORDER BY relname"
                )
                tables = cur.fetchall()
                cur.execute(
                    "SELECT funcname, calls FROM pg_stat_user_functions "
                    "WHERE funcname = ANY(%s) AND calls > 0 ORDER BY funcname",
                    [list(TRAPS)],
                )
                return tables, cur.fetchall()
        finally:
            conn.close()

    def arm(self):
        self.before = (self.content(), self.counters())

    def assert_untouched(self):
        content, (tables, calls) = self.content(), self.counters()
        assert content[0] == [(i, s, a) for i, s, a in CANARY_ROWS], "the canary changed"
        assert content == self.before[0], "the source changed"
        assert calls == self.before[1][1], (
            f"a trap was called: {calls} (before: {self.before[1][1]})"
        )
        assert tables == self.before[1][0], "a write was attempted (pg_stat_user_tables)"


def build_canary(server, name, *extra: str):
    setup = server.connect(name)
    with setup.cursor() as cur:
        cur.execute(SETUP)
        for script in extra:
            cur.execute(script)
        cur.execute(f"ALTER DATABASE \"{name}\" SET track_functions = 'all'")
    setup.close()


def canary_fixtures(*extra: str, schemas=()):
    """The (canary_db, canary) fixtures of a module whose canary database also runs the
    `extra` scripts, which create `schemas`."""

    @pytest.fixture(scope="module")
    def canary_db(source_server):
        with throwaway_database(source_server) as db:
            build_canary(source_server, db.name, *extra)
            yield Canary(db)

    @pytest.fixture
    def canary(canary_db):
        """The module's canary database, rebuilt if an earlier test damaged it; armed."""
        if canary_db.content() != canary_db.pristine:
            canary_db.db.execute(
                "".join(f"DROP SCHEMA {schema} CASCADE; " for schema in schemas)
                + "DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
                "GRANT ALL ON SCHEMA public TO public"
            )
            build_canary(canary_db.server, canary_db.db.name, *extra)
        canary_db.arm()
        cache.clear()  # the API's rate counts
        return canary_db

    return canary_db, canary


def assert_one_clean_sentence(message: str):
    assert message and "\n" not in message.strip(), message
    assert "Traceback" not in message and 'File "' not in message, message
    assert not SOURCE_VALUES.search(message), message


class Refused(str):
    """The one sentence a surface answered with instead of a job."""


def query_through(surface, client, user, connection, sql, allow=()):
    """Export (or preview) a saved query through a surface: Refused(message), the job it
    accepted (already run), or for "preview" the page's table as HTML."""
    if surface == "preview":
        client.force_login(user)
        page = client.post(reverse("query_preview"), {"connection": connection.pk, "sql": sql})
        assert page.status_code == 200
        text = page.content.decode()
        found = re.search(r'<p class="error" id="preview-error">(.*?)</p>', text, re.S)
        return Refused(html.unescape(found.group(1))) if found else text
    if surface == "form":
        client.force_login(user)
        page = client.post(
            reverse("query_create"), {"connection": connection.pk, "name": "attack", "sql": sql}
        )
        if page.status_code == 302:
            return SavedQuery.objects.get(connection=connection, name="attack")
        errors = re.findall(r'<p class="error[^"]*">(.*?)</p>', page.content.decode(), re.S)
        assert errors, page.content.decode()[:3000]
        return Refused(html.unescape(errors[0]))
    query = SavedQuery.objects.create(connection=connection, name="attack", sql=sql)
    if surface == "command":
        return export_by_command(user, connection, "--query", "attack", allow=allow)
    if surface == "api":
        data = {"connection": connection.pk, "queries": ["attack"], "allow_sensitive": list(allow)}
        return export_by_api(client, user, data)
    assert surface == "saved"
    try:
        job = create_job(user, connection, queries=[query], allow_sensitive=allow)
    except BadRequest as error:
        return Refused(str(error))
    return job  # not run: the caller looks at its spec, or runs it


# What an attacker with CREATE on schema r2 (and no right to read people) leaves there.
# Functions run with the privileges of whoever calls them: ADU's login.
ROUND2_EXTRA = """
CREATE SCHEMA r2;
CREATE TABLE r2.staff (id integer, dept text, salary numeric(10,2)) PARTITION BY LIST (dept);
CREATE TABLE r2.staff_a PARTITION OF r2.staff FOR VALUES IN ('a');
CREATE TABLE r2.staff_b PARTITION OF r2.staff FOR VALUES IN ('b');
INSERT INTO r2.staff VALUES (1, 'a', 91234.56), (2, 'b', 98765.43);
-- STABLE: the plan check refuses only VOLATILE functions.
CREATE FUNCTION r2.peek() RETURNS text STABLE LANGUAGE plpgsql AS $$
BEGIN RETURN (SELECT string_agg(ssn, ',') FROM public.people); END $$;
CREATE VIEW r2.report AS SELECT id, r2.peek() AS note FROM public.canary;
-- IMMUTABLE with a constant argument: PostgreSQL runs it while planning (EXPLAIN).
CREATE FUNCTION r2.fold(integer) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'read: %', (SELECT string_agg(secret, ' ') FROM public.canary); END $$;
CREATE VIEW r2.folded AS SELECT id FROM public.people WHERE r2.fold(1);
-- The volatile trap public.lower, called qualified: the plan shows public.lower(...).
CREATE VIEW r2.lowered AS SELECT id, public.lower(name) AS x FROM public.people;
-- A volatile function whose name the plan shows quoted.
CREATE FUNCTION r2."Noisy"() RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN RETURN public.noisy(); END $$;
CREATE VIEW r2.quoted AS SELECT id FROM public.people WHERE r2."Noisy"();
CREATE VIEW r2.noisy_view AS SELECT id FROM public.people WHERE public.noisy();
"""


def exported_values(job) -> str:
    """Every value of every file the job wrote, as one text."""
    found = []
    for run in job.tables.all():
        for f in run.files:
            table = pq.read_table(job.folder() / f["path"])
            found.extend(str(v) for column in table.columns for v in column.to_pylist())
    return " ".join(found)


def policy(connection, pattern, action="exclude"):
    SensitiveColumn.objects.create(connection=connection, pattern=pattern, action=action)


# -- A table of every PostgreSQL type ------------------------------------------------------


TYPES_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a integer, b text);
CREATE DOMAIN price AS numeric(7,2) CHECK (VALUE >= 0);
CREATE DOMAIN label AS text;
"""

COLUMNS = """
  id integer PRIMARY KEY,
  c_int2 smallint, c_int4 integer, c_int8 bigint, c_oid oid,
  c_num152 numeric(15,2), c_num5010 numeric(50,10), c_num numeric,
  c_float4 real, c_float8 double precision, c_money money, c_bool boolean,
  c_char char(5), c_varchar varchar(10), c_text text, c_name name, c_bytea bytea,
  c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz,
  c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_xml xml,
  c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
  c_bit bit(4), c_varbit varbit, c_int4range int4range, c_tstzrange tstzrange,
  c_numrange numrange, c_multirange int4multirange, c_enum mood, c_price price,
  c_label label, c_ints integer[], c_grid integer[][], c_texts text[], c_pair pair,
  c_point point, c_tsvector tsvector, c_lsn pg_lsn
"""

ORDINARY_ROWS = """
INSERT INTO {table} VALUES
 (1, -32768, -2147483648, -9223372036854775808, 4294967295,
  -1234567890123.45, 12345678901234567890123456789012345678.0123456789, 1e-30,
  1.1, 1.7976931348623157e308, -92233720368547758.08, true,
  'ab', 'x,y"z', E'line1\\nline2, "quoted", back\\\\slash', 'name', '\\x00ff10',
  '2024-02-29', '2024-01-01 12:34:56.789012', '1999-12-31 23:59:59.999999+05:30',
  '23:59:59.999999', '12:00+05:30', '1 year 2 mons 3 days 04:05:06.789012',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50]}', '{"b": {"c": null}}',
  '<a x="1">t</a>', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '08:00:2b:01:02:03:04:05', B'1010', B'10101', '[1,10)',
  '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '(1.5,2.25]', '{[1,3), [5,7)}',
  'happy', 12.50, 'lbl', '{1,NULL,3}', '{{1,2},{3,4}}', '{"a,b", NULL, "q\\"uote", ""}',
  ROW(1, 'x y'), '(1.5,2)', 'a fat cat', '16/B374D848'),
 (2, 32767, 2147483647, 9223372036854775807, 0,
  0.00, -1, 123456789012345678901234567890.123456789012345678901234567890,
  -0, 5e-324, 92233720368547758.07, false,
  '', '', '', '', '\\x',
  '0001-01-01', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00',
  '00:00:00', '00:00:00-15:59', '-1 days +02:00:00', '00000000-0000-0000-0000-000000000000',
  '[]', '[]', '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff',
  B'0000', B'', 'empty', 'empty', 'empty', '{}', 'sad', 0, '',
  '{}', '{}', '{}', ROW(NULL, NULL), '(0,0)', '', '0/0'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL)
"""

# Values no native Arrow type holds: each column must fall back to text, exactly.
SPECIAL_ROWS = """
INSERT INTO {table} (id, c_num152, c_num, c_float8, c_date, c_ts, c_tstz, c_time, c_ints) VALUES
 (10, 'NaN', 'NaN', 'NaN', 'infinity', 'infinity', 'infinity', '24:00:00', '[0:1]={7,8}'),
 (11, 1.5, 'Infinity', 'Infinity', '-infinity', '-infinity', '-infinity', '12:00', '{}'),
 (12, 2.5, '-Infinity', '-Infinity', '0044-03-15 BC', '4713-01-01 00:00 BC',
  '294276-12-31 23:59:59.999999+00', '00:00', '{1}'),
 (13, NULL, 1, 1, '5874897-12-31', '10000-01-01 00:00', '4713-01-01 00:00+00 BC', NULL, NULL)
"""


def assert_file_equals_source(source_db, job, table):
    run = job.tables.get(table=table)
    assert run.status == "complete", list(job.errors.values_list("message", flat=True))
    [entry] = run.files
    path = job.folder() / entry["path"]
    data = pq.read_table(path)
    declared = {c["name"]: c["source_type"] for c in run.columns}
    rows = data.to_pylist()
    assert len(rows) == run.rows_written == run.rows_expected
    mismatches = []
    for row in rows:
        names = [name for name in row if name != "id"]
        checks = ", ".join(
            f"({name})::text IS NOT DISTINCT FROM CAST(%s AS {declared[name]})::text"
            for name in names
        )
        values = [_adapt(row[name]) for name in names]
        [result] = source_db.execute(
            f"SELECT {checks} FROM {table} WHERE id = %s", [*values, row["id"]]
        )
        mismatches += [
            (row["id"], n, row[n]) for n, ok in zip(names, result, strict=True) if not ok
        ]
    assert not mismatches
    return data, run


def _adapt(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, bytes):
        return psycopg2.Binary(value)
    return value


# -- Task clusters -------------------------------------------------------------------------


def slow_view(db, name, rows, sleeps):
    """A view that streams for about `sleeps` x 50 ms, for both its count and its read."""
    every = max(1, rows // sleeps)
    db.execute(
        f"CREATE VIEW {name} AS SELECT i, md5(i::text) AS h FROM generate_series(1, {rows}) i "
        f"WHERE i % {every} <> 0 OR pg_sleep(0.05) IS NOT NULL"
    )


def diagnose(job):
    return lambda: (
        list(job.tables.values_list("status", "rows_expected", "rows_written")),
        list(job.errors.values_list("message", flat=True)),
    )


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            details = what[1]() if isinstance(what, tuple) else ""
            raise AssertionError(f"timed out waiting for {what} {details}")
        time.sleep(0.25)


def finished(job):
    return lambda: ExportJob.objects.get(pk=job.pk).is_finished


# -- Connections ---------------------------------------------------------------------------


SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


class PasswordTrap:
    """A listening socket that speaks just enough of PostgreSQL's protocol to be sent a
    password: it answers 'no' to TLS and GSS, asks for the password in clear text, keeps
    every message, and refuses the login."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    self._talk(conn)
                except (OSError, ConnectionError):
                    pass

    def _read(self, conn, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _talk(self, conn):
        while True:
            (length,) = struct.unpack("!i", self._read(conn, 4))
            payload = self._read(conn, length - 4)
            self.received += payload
            if struct.unpack("!i", payload[:4])[0] in (SSL_REQUEST, GSS_REQUEST):
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        tag = self._read(conn, 1)
        (length,) = struct.unpack("!i", self._read(conn, 4))
        self.received += tag + self._read(conn, length - 4)
        fields = b"SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"
        conn.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)

    def close(self):
        self.sock.close()
        self.thread.join(timeout=5)


def portal_data(connection, **changes):
    data = {
        "name": connection.name,
        "kind": connection.kind,
        "host": connection.host,
        "port": connection.port,
        "database": connection.database,
        "username": connection.username,
        "password": "",
        "sslmode": connection.sslmode,
        "connect_timeout": connection.connect_timeout,
    }
    return {**data, **changes}


# -- Quality rules -------------------------------------------------------------------------


def rule_form(connection, **changes):
    data = {
        "connection": connection.pk,
        "schema": "public",
        "table": "orders",
        "kind": "range",
        "column": "amount",
        "minimum": "0",
        "maximum": "100",
        "allowed_values": "",
        "pattern": "",
        "min_rows": "",
        "grain": "",
        "severity": "warning",
        "enabled": "on",
    }
    return {**data, **changes}


def calls_to(monkeypatch, owner, name: str) -> list[tuple]:
    """The positional arguments of every call to `owner.name` from now on; the calls still
    go through to it."""
    calls: list[tuple] = []
    real = getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def export_by_command(user, connection, *args, allow=()):
    """`adu_export --sync --json` as `user` with `args`: Refused(message), or the job it ran."""
    out = io.StringIO()
    extra = [a for column in allow for a in ("--allow-sensitive", column)]
    try:
        call_command(
            "adu_export", connection.name, *args, *extra,
            "--sync", "--json", "--as", user.username, stdout=out,
        )  # fmt: skip
    except CommandError as error:
        return Refused(str(error))
    except SystemExit:
        pass
    return ExportJob.objects.get(pk=json.loads(out.getvalue())["job_id"])


def export_by_api(client, user, data: dict):
    """POST /api/v1/jobs/ with a token of `user`: Refused(message), or the job it accepted,
    run here."""
    _, token = ApiToken.issue(user, f"t-{uuid.uuid4().hex[:6]}")
    response = post_json(client, "/api/v1/jobs/", data, HTTP_AUTHORIZATION=f"Bearer {token}")
    if response.status_code == 400:
        return Refused(error_of(response)["message"])
    assert response.status_code == 202, response.content
    return run_job(response.json()["id"])


ROWS_AS_TEXT_SETTINGS = (
    "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'iso_8601'; SET TimeZone = 'UTC';"
    "SET extra_float_digits = 3; SET bytea_output = 'hex'"
)


def rows_as_text(db, schema, table):
    """Every row of a table in its text form, as a multiset: two tables hold the same rows
    exactly when these are equal (compared apart from ADU's own fingerprints)."""
    import collections

    conn = db.server.connect(db.name)
    with conn.cursor() as cur:
        cur.execute(ROWS_AS_TEXT_SETTINGS)
        cur.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
        found = collections.Counter(r for (r,) in cur.fetchall())
    conn.close()
    return found
