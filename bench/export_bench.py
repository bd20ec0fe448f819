"""Export benchmark: ADU against DuckDB, ConnectorX and the raw COPY limit, on one machine.

Run it with `make bench`, or for a quick try:

    .venv/bin/python bench/export_bench.py --rows 300000 --small-rows 100000 --runs 1

What it does:

1. Starts a throwaway PostgreSQL server (connections.localpg, fsync off) in a temporary
   folder. ADU's own state (SQLite database, keys, export folder) lives in the same folder,
   so the bench never touches var/.
2. Loads `lineitem` (TPC-H shaped, --rows), `lineitem_small` (--small-rows, same shape)
   and `wide` (one column of each common type: 10,000 ordinary rows and a few edge rows:
   extremes, empties, NULLs, NaN and infinities, BC and far-future dates, 24:00:00).
3. Exports each lineitem table with each tool, --runs times, the tools taking turns so
   that drift on the machine touches all of them alike. Every export runs in a fresh
   Python process, so its peak RSS (VmHWM, see peak_rss_mb) is that tool's alone. The wall time
   is measured inside that process around the export itself (connect, read, write,
   close), not interpreter start-up or imports. The tools, each with its defaults:
     - ADU: create_job + run_job, default options;
     - DuckDB with its postgres extension: COPY ... TO parquet, zstd level 3;
     - ConnectorX: read_sql into Arrow, then pyarrow write_table, zstd level 3;
     - COPY ... TO STDOUT (FORMAT binary) into /dev/null: what one backend can send,
       the limit for any reader on a single connection.
   On lineitem, ADU also runs with validation off and with full validation: its default
   validates a sample, and the report shows what sample and full cost over none.
4. Prints one table per dataset (median wall time; peak RSS is the largest of the runs),
   then the flat-memory check: ADU's peak RSS on the small table against the large one.
5. Fidelity: each Parquet-writing tool exports `wide`. Every value read back with pyarrow
   is sent to the server, cast to the column's declared type and compared there with the
   stored value as text (which, unlike `=`, tells 1.50 from 1.5). A value that cannot be
   sent or cast back counts as a difference. A tool that fails on the table is reported
   so, then tried on each column alone, so that one value or type it cannot handle does
   not hide what it does with the others.

The script is also its own child: with ADU_BENCH_CHILD set in the environment (a JSON
spec, which carries the server password, hence not in argv) it runs one export and
prints one result line.
"""

import argparse
import atexit
import contextlib
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE = "bench"
CHILD_ENV = "ADU_BENCH_CHILD"
RESULT_MARK = "ADU-BENCH-RESULT "
TOOLS = ("adu", "duckdb", "connectorx", "copy")
PARQUET_TOOLS = ("adu", "duckdb", "connectorx")
# ADU with its other validation modes (the default, "adu", validates a sample).
VALIDATION_TOOLS = {"adu_off": "off", "adu_full": "full"}
LABELS = {
    "adu_off": "ADU, no validation",
    "adu_full": "ADU, full validation",
    "adu": "ADU",
    "duckdb": "DuckDB",
    "connectorx": "ConnectorX",
    "copy": "COPY binary",
}
ZSTD_LEVEL = 3

# TPC-H lineitem, generated in the server: random() after setseed is repeatable.
LINEITEM_SQL = """
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} (
    l_orderkey bigint NOT NULL, l_partkey bigint NOT NULL, l_suppkey bigint NOT NULL,
    l_linenumber integer NOT NULL, l_quantity numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL,
    l_tax numeric(15,2) NOT NULL, l_returnflag char(1) NOT NULL,
    l_linestatus char(1) NOT NULL, l_shipdate date NOT NULL, l_commitdate date NOT NULL,
    l_receiptdate date NOT NULL, l_shipinstruct char(25) NOT NULL,
    l_shipmode char(10) NOT NULL, l_comment varchar(44) NOT NULL
);
SELECT setseed(0.42);
INSERT INTO {table}
SELECT (i / 4) + 1, 1 + (random() * 199999)::bigint, 1 + (random() * 9999)::bigint,
    mod(i, 4) + 1, q, round((q * (900 + random() * 100000) / 100)::numeric, 2),
    round((random() * 0.10)::numeric, 2), round((random() * 0.08)::numeric, 2),
    (ARRAY['R', 'A', 'N'])[1 + (random() * 2)::int], (ARRAY['O', 'F'])[1 + (random())::int],
    sd, sd + (random() * 60)::int - 30, sd + 1 + (random() * 29)::int,
    (ARRAY['DELIVER IN PERSON', 'COLLECT COD', 'NONE', 'TAKE BACK RETURN'])
        [1 + (random() * 3)::int],
    (ARRAY['REG AIR', 'AIR', 'RAIL', 'SHIP', 'TRUCK', 'MAIL', 'FOB'])[1 + (random() * 6)::int],
    left(w[1 + (random() * 39)::int] || ' ' || w[1 + (random() * 39)::int] || ' '
        || w[1 + (random() * 39)::int] || ' ' || w[1 + (random() * 39)::int] || ' '
        || w[1 + (random() * 39)::int] || ' ' || w[1 + (random() * 39)::int],
        10 + (random() * 33)::int)
FROM (
    SELECT i, (1 + random() * 49)::int::numeric(15,2) AS q,
        date '1992-01-02' + (random() * 2500)::int AS sd, %(words)s::text[] AS w
    FROM generate_series(0, %(rows)s - 1) AS i
) AS s;
"""
WORDS = (
    "furiously carefully quickly slyly blithely ironic final regular express special pending "
    "bold even silent unusual deposits requests accounts packages instructions theodolites "
    "pinto beans foxes ideas dependencies excuses platelets asymptotes courts dolphins sleep "
    "wake are haggle nag use boost affix detect"
).split()

WIDE_SQL = r"""
DROP TABLE IF EXISTS wide;
DROP TYPE IF EXISTS mood;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE wide (
    id integer PRIMARY KEY,
    c_smallint smallint,
    c_integer integer,
    c_bigint bigint,
    c_numeric numeric(15,2),
    c_numeric_any numeric,
    c_real real,
    c_double double precision,
    c_money money,
    c_boolean boolean,
    c_char char(5),
    c_varchar varchar(20),
    c_text text,
    c_bytea bytea,
    c_date date,
    c_timestamp timestamp,
    c_timestamptz timestamptz,
    c_time time,
    c_timetz timetz,
    c_interval interval,
    c_uuid uuid,
    c_json json,
    c_jsonb jsonb,
    c_inet inet,
    c_int_array integer[],
    c_text_array text[],
    c_int4range int4range,
    c_enum mood
);
-- Ordinary values, spread by a hash of the row number so every run loads the same data.
INSERT INTO wide
SELECT i,
    mod(h, 32768),
    h,
    h::bigint * 4294967296 + i,
    (h::numeric * 1000 + i) / 100,
    h::numeric * 100000000000000000000 + i / 1000000000.0 + 0.123456789,
    (h / 1000.0)::real,
    h::float8 / 7,
    (h / 100.0)::numeric::money,
    CASE mod(i, 3) WHEN 0 THEN NULL ELSE mod(i, 2) = 0 END,
    left(md5(i::text), mod(i, 6)),
    left(md5(i::text), mod(i, 21)),
    CASE WHEN mod(i, 10) = 0 THEN E'a "quoted", comma\nnew line ' || i
        ELSE 'ünïcødé ' || md5(i::text) END,
    decode(md5(i::text), 'hex'),
    date '2000-01-01' + mod(h, 20000),
    timestamp '2000-01-01' + h * interval '0.123457 seconds',
    timestamptz '2000-01-01 00:00+00' + h * interval '1.000001 seconds',
    time '00:00' + t * interval '1 microsecond',
    ((time '00:00' + t * interval '1 microsecond')::text
        || (ARRAY['+00', '+05:30', '-08', '+14'])[1 + mod(i, 4)])::timetz,
    make_interval(years => mod(i, 3), months => mod(i, 12), days => mod(i, 40),
        hours => mod(i, 30), secs => mod(t, 100000000) / 1000000.0),
    md5(i::text)::uuid,
    json_build_object('id', i, 'name', md5(i::text), 'tags', json_build_array('x', mod(i, 7)),
        'price', 1.50, 'none', NULL),
    jsonb_build_object('id', i, 'nested', jsonb_build_object('a', ARRAY[i, i + 1]),
        'price', 2.50),
    CASE WHEN mod(i, 5) = 0 THEN ('2001:db8::' || to_hex(i))::inet
        ELSE ('10.' || mod(i / 65536, 256) || '.' || mod(i / 256, 256) || '.' || mod(i, 256)
            || '/' || (8 + mod(i, 25)))::inet END,
    ARRAY[i, -i, CASE WHEN mod(i, 5) = 0 THEN NULL ELSE h END],
    ARRAY[left(md5(i::text), 4), CASE WHEN mod(i, 7) = 0 THEN NULL ELSE 'a,b "c"' END, ''],
    int4range(i, i + mod(i, 100), CASE mod(i, 2) WHEN 0 THEN '[)' ELSE '[]' END),
    (enum_range(NULL::mood))[1 + mod(i, 3)]
FROM (
    SELECT i, hashint4(i) AS h, mod(abs(hashint4(i)::bigint) * 1000003, 86400000000) AS t
    FROM generate_series(1, 10000) AS i
) AS s;
-- Edge rows: the largest, the smallest and empty values, all NULLs...
INSERT INTO wide VALUES
 (-1, 32767, 2147483647, 9223372036854775807, 9999999999999.99,
  123456789012345678901234567890.123456789, 3.4028235e38, 1.7976931348623157e308,
  92233720368547758.07, true, 'abcde', repeat('z', 20),
  E'tab\there, "quotes", back\\slash, new\nline, duck \U0001F986', '\x00ff10',
  '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00',
  '23:59:59.999999', '23:59:59.999999-15:59', '1 year 2 mons 3 days 04:05:06.789012',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"a": [1, 2.50], "ü": "\u00e9"}',
  '{"b": {"c": null}}', '2001:db8::ff00:42:8329', '{2147483647,-2147483648,NULL}',
  '{"a,b",NULL,"q\"uote",""}', '(,)', 'happy'),
 (-2, -32768, -2147483648, -9223372036854775808, -9999999999999.99,
  -0.000000000000000000000000000001, 1e-45, 5e-324, -92233720368547758.08, false,
  '', '', '', '\x', '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00',
  '00:00:00', '00:00:00+15:59', '-1 days +02:00:00.000001',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '0.0.0.0/0', '{}', '{}', 'empty',
  'sad'),
 (-3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- ...and values that PostgreSQL holds but Arrow's native types (and Python's) do not.
INSERT INTO wide (id, c_numeric, c_numeric_any, c_real, c_double, c_date, c_timestamp,
                  c_timestamptz, c_time, c_timetz, c_interval, c_int_array) VALUES
 (-4, 'NaN', 'Infinity', 'NaN', 'Infinity', 'infinity', '-infinity', 'infinity',
  '24:00:00', '24:00:00+00', '-178000000 years', '[0:1]={7,8}'),
 (-5, 1.5, '-Infinity', '-Infinity', 'NaN', '0044-03-15 BC', '4713-01-01 00:00 BC',
  '294276-12-31 23:59:59.999999+00', '00:00', '00:00+00', '0', '{{1,2},{3,4}}');
"""


# --------------------------------------------------------------------------------------
# Child: one export in a fresh process
# --------------------------------------------------------------------------------------


def setup_django():
    """Django with the settings the parent chose (ADU_VAR_DIR, ADU_EXPORT_ROOT in os.environ)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adu_site.settings")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def prepare_adu(spec):
    setup_django()
    from connections.models import Connection
    from exports.engine.run import run_job
    from exports.jobs import create_job

    connection = Connection.objects.select_related("owner").get(pk=spec["connection_id"])

    if spec["tool"] in SCHEMA_TOOLS:  # a whole schema ("table" names it)
        what = {"schemas": [spec["table"]], "options": {"parallel": spec["parallel"]}}
    else:
        validation = VALIDATION_TOOLS.get(spec["tool"])
        what = {
            "tables": [f"public.{spec['table']}"],
            "options": {"validation": validation} if validation else {},
        }

    def finished(job):
        if job.status != "complete":
            messages = list(job.errors.values_list("message", flat=True))
            raise RuntimeError(messages[0] if messages else f"job status {job.status}")
        # The files alone: the tables' other fields would add to the peak RSS measured.
        written = job.tables.values_list("files", flat=True).iterator()
        files = [str(job.folder() / f["path"]) for run_files in written for f in run_files]
        return files, job.rows_written

    def export():
        return finished(
            run_job(create_job(connection.owner, connection, out=spec["out"], **what).pk)
        )

    if not spec.get("cluster"):
        return export
    cluster = TaskCluster(spec["parallel"])
    atexit.register(cluster.stop)  # after the clock: a cluster takes seconds to stop

    def through_the_cluster():
        from exports.models import ExportJob
        from exports.tasks import start_job

        job = create_job(connection.owner, connection, out=spec["out"], **what)
        start_job(job)
        done = ExportJob.objects.filter(pk=job.pk, status__in=ExportJob.FINISHED)
        while not done.exists():
            time.sleep(0.05)
        job.refresh_from_db()
        return (*finished(job), cluster.peak_rss_mb())

    return through_the_cluster


class TaskCluster:
    """`manage.py qcluster` with one worker per table exported at once, as `make run`
    starts it, ready before the clock starts: a job through it runs as the portal's do
    (the coordinator and its helpers are tasks, each in a worker process of its own; the
    ORM broker looks for new tasks every second)."""

    def __init__(self, workers: int):
        self.log = open(Path(os.environ["ADU_VAR_DIR"]) / f"cluster-{os.getpid()}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=REPO,
            env={**os.environ, "ADU_WORKERS": str(workers), "ADU_LOG_LEVEL": "INFO"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while self._text().count("ready for work") < workers:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the cluster did not start: {self._text()[-300:]}")
            time.sleep(0.1)

    def _text(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def peak_rss_mb(self) -> float:
        """The largest peak RSS among the cluster's processes (its workers export)."""
        import psutil

        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        peaks = []
        for process in processes:
            with open(f"/proc/{process.pid}/status") as status:
                peaks += [
                    int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")
                ]
        return max(peaks)

    def stop(self):
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def duckdb_extension() -> Path:
    """The wheel carries DuckDB's postgres extension: loading it by path needs no download."""
    import duckdb
    import duckdb_extension_postgres_scanner as scanner

    return (
        Path(scanner.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "postgres_scanner.duckdb_extension"
    )


@contextlib.contextmanager
def duckdb_attached(dsn: str, read_only: bool):
    """A DuckDB connection with its postgres extension loaded (from the PyPI package) and
    the database attached as `pg`; inside the clock, as connecting is part of each tool."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"LOAD {sql_string(str(duckdb_extension()))}")
        mode = ", READ_ONLY" if read_only else ""
        con.execute(f"ATTACH {sql_string(dsn)} AS pg (TYPE postgres{mode})")
        yield con
    finally:
        con.close()


def prepare_duckdb(spec):
    duckdb_extension()  # found before the clock starts

    def export():
        with duckdb_attached(spec["dsn"], read_only=True) as con:
            con.execute(
                f"COPY (SELECT {spec['select']} FROM pg.public.{spec['table']}) "
                f"TO {sql_string(spec['out'])} "
                f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL})"
            )
        return [spec["out"]], None

    return export


def prepare_connectorx(spec):
    import connectorx
    import pyarrow.parquet as pq

    def export():
        table = connectorx.read_sql(
            spec["uri"], f"SELECT {spec['select']} FROM {spec['table']}", return_type="arrow"
        )
        pq.write_table(table, spec["out"], compression="zstd", compression_level=ZSTD_LEVEL)
        return [spec["out"]], table.num_rows

    return export


def prepare_copy(spec):
    import psycopg2

    def export():
        conn = psycopg2.connect(spec["dsn"])
        try:
            with open(os.devnull, "wb") as sink, conn.cursor() as cur:
                cur.copy_expert(
                    f"COPY (SELECT * FROM {spec['table']}) TO STDOUT (FORMAT binary)", sink
                )
                rows = cur.rowcount
        finally:
            conn.close()
        return [], rows

    return export


def prepare_duckdb_schema(spec):
    """DuckDB exports the schema table by table through one attached database (its
    postgres extension has no schema-wide export), each table to its own file."""
    duckdb_extension()

    def export():
        folder = Path(spec["out"])
        folder.mkdir()
        files = []
        with duckdb_attached(spec["dsn"], read_only=True) as con:
            tables = con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'pg' "
                "AND schema_name = ? ORDER BY 1",
                [spec["table"]],
            ).fetchall()
            for (table,) in tables:
                out = str(folder / f"{table}.parquet")
                con.execute(
                    f"COPY (SELECT * FROM pg.{spec['table']}.{table}) TO {sql_string(out)} "
                    f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL})"
                )
                files.append(out)
        return files, None

    return export


def prepare_pg_dump(spec):
    """pg_dump's directory format with two jobs: the reference for a whole schema's cost
    per table (its files are COPY text, compressed by default)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from connections.localpg import bindir

    def export():
        env = {**os.environ, "PGPASSWORD": spec["password"]}
        subprocess.run(
            [str(bindir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(spec["port"]), "-U",
             "postgres", "-Fd", "-j", "2", "-n", spec["table"], "-f", spec["out"], DATABASE],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        return [str(f) for f in Path(spec["out"]).iterdir() if f.is_file()], None

    return export


def prepare_adu_load(spec):
    """Load the export in spec["folder"] into the target database, replacing the table
    an earlier run loaded: create_load + run_load, as `adu_load --sync` does."""
    setup_django()
    from connections.models import Connection
    from loads.creation import create_load
    from loads.engine import run_load

    target = Connection.objects.select_related("owner").get(pk=spec["target_id"])

    def load():
        done = run_load(create_load(target.owner, spec["folder"], target, if_exists="replace").pk)
        if done.status not in ("complete", "verified"):
            raise RuntimeError(done.error or str(list(done.tables.values_list("error", flat=True))))
        return [], sum(t.rows for t in done.tables.all())

    return load


def prepare_duckdb_load(spec):
    """DuckDB's postgres writer: INSERT the Parquet file's rows into a new table."""
    duckdb_extension()

    def load():
        with duckdb_attached(spec["target_dsn"], read_only=False) as con:
            con.execute("DROP TABLE IF EXISTS pg.public.lineitem_duckdb")
            files = ", ".join(sql_string(f) for f in spec["files"])
            con.execute(
                f"CREATE TABLE pg.public.lineitem_duckdb AS SELECT * FROM read_parquet([{files}])"
            )
            [(rows,)] = con.execute("SELECT count(*) FROM pg.public.lineitem_duckdb").fetchall()
        return [], rows

    return load


def prepare_transfer(spec):
    """Bundle the export in spec["folder"] into spec["media"] (encrypted to spec["recipient"]
    for the *_age tools), or receive that bundle as a far side would (its earlier receipt
    and folder removed first, off the clock)."""
    setup_django()
    import shutil as sh

    from django.conf import settings

    from transfer import keys
    from transfer.bundle import make_bundle
    from transfer.models import Receipt
    from transfer.receive import indexes, receive

    media = Path(spec["media"])
    if spec["tool"].startswith("adu_bundle"):
        sh.rmtree(media, ignore_errors=True)
        recipient = keys.recipient(spec["recipient"]) if spec["tool"].endswith("_age") else None

        def bundle():
            make_bundle(Path(spec["folder"]), media, 1 << 30, recipient)
            return [], spec["rows"]

        return bundle
    Receipt.objects.all().delete()
    sh.rmtree(settings.RECEIVE_ROOT, ignore_errors=True)
    trusted = keys.trusted_keys([spec["trusted"]])

    def received():
        [index] = indexes(media)
        got = receive(index, trusted)
        return [], got.receipt.rows

    return received


PREPARE = {
    "adu_bundle": prepare_transfer,
    "adu_bundle_age": prepare_transfer,
    "adu_receive": prepare_transfer,
    "adu_receive_age": prepare_transfer,
    "adu_load": prepare_adu_load,
    "duckdb_load": prepare_duckdb_load,
    "adu_schema": prepare_adu,
    "adu_schema_4": prepare_adu,
    "adu_cluster": prepare_adu,
    "duckdb_schema": prepare_duckdb_schema,
    "pg_dump": prepare_pg_dump,
    "adu": prepare_adu,
    "adu_off": prepare_adu,
    "adu_full": prepare_adu,
    "duckdb": prepare_duckdb,
    "connectorx": prepare_connectorx,
    "copy": prepare_copy,
}


def child_main(spec):
    result = {}
    try:
        export = PREPARE[spec["tool"]](spec)
        start = time.perf_counter()
        files, rows, *peak = export()  # a tool in other processes says their peak
        result.update(wall=time.perf_counter() - start, files=files, rows=rows)
        if peak:
            result["peak_rss_mb"] = peak[0]
    except Exception as error:
        traceback.print_exc()
        result["error"] = first_line(error)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(RESULT_MARK + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's own peak resident set size.

    Not ru_maxrss: Linux carries the parent's high-water mark over fork and exec into the
    child's ru_maxrss, so a child of this (large) parent would report at least the
    parent's size. VmHWM belongs to the address space, which exec creates anew.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


# --------------------------------------------------------------------------------------
# Parent: server, data, runs, report
# --------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6_000_000, help="rows of lineitem")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool (median wall)")
    parser.add_argument(
        "--small-rows",
        type=int,
        default=1_000_000,
        help="rows of lineitem_small, for the flat-memory check",
    )
    parser.add_argument(
        "--schema-tables",
        default="500,2000",
        help="sizes of the schemas of small tables, in tables (comma-separated)",
    )
    parser.add_argument(
        "--only",
        choices=("lineitem", "schema", "load", "transfer"),
        help="run one of the scenarios",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the server running and its folder"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="adu-bench-"))
    root.chmod(0o755)  # the postgres OS user must enter it to reach its data folder
    os.environ["ADU_VAR_DIR"] = str(root / "var")
    os.environ["ADU_EXPORT_ROOT"] = str(root / "exports")
    os.environ.setdefault("ADU_LOG_LEVEL", "WARNING")
    # Keys for this run only, shared with the children (which decrypt the password).
    from cryptography.fernet import Fernet

    os.environ["ADU_SECRET_KEY"] = secrets.token_urlsafe(50)
    os.environ["ADU_FERNET_KEYS"] = Fernet.generate_key().decode()
    setup_django()
    from django.core.management import call_command

    from connections.localpg import LocalPostgres, bindir

    pg = LocalPostgres(root / "pg", fast_unsafe=True)
    try:
        call_command("migrate", verbosity=0)
        step(f"Starting PostgreSQL in {pg.root}")
        pg.ensure_started()
        if args.only == "schema":
            args.rows = args.small_rows = 0
        if args.only in ("load", "transfer"):
            args.small_rows = 0
        context = prepare_source(pg, args)
        if args.only not in ("schema", "load", "transfer"):
            tools = {"lineitem": TOOLS + tuple(VALIDATION_TOOLS), "lineitem_small": TOOLS}
            for table in ("lineitem", "lineitem_small"):
                context["results"][table] = bench_table(context, table, args.runs, tools[table])
                report_table(context, table, args.runs)
            report_validation(context)
            report_flat_memory(context)
            report_fidelity(context, fidelity(context))
        if args.only in (None, "load"):
            report_load(bench_load(context, args.runs), context, args.runs)
        if args.only in (None, "transfer"):
            report_transfer(bench_transfer(context, args.runs), args.runs)
        if args.only not in ("lineitem", "load", "transfer"):
            sizes = [int(n) for n in args.schema_tables.split(",") if n.strip()]
            results = {
                schema: bench_schema(context, schema, args.runs)
                for schema in load_schemas(context, sizes)
            }
            report_schemas(results, args.runs)
    finally:
        if args.keep:
            runuser = "runuser -u postgres -- " if os.geteuid() == 0 else ""
            print(
                f"\nKept {root}: the server listens on 127.0.0.1:{pg.port}, database "
                f"{DATABASE}, user postgres, password in {pg.password_file}. Stop it with\n"
                f"  {runuser}{bindir() / 'pg_ctl'} -D {pg.data} stop"
            )
        else:
            pg.destroy()
            shutil.rmtree(root, ignore_errors=True)


def step(message):
    print(message, flush=True)


def prepare_source(pg, args) -> dict:
    from django.contrib.auth import get_user_model

    from connections.models import Connection

    admin = pg.connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE}")
    admin.close()
    conn = pg.connect(DATABASE)
    counts = {}
    with conn.cursor() as cur:
        for table, rows in (("lineitem", args.rows), ("lineitem_small", args.small_rows)):
            start = time.perf_counter()
            cur.execute(LINEITEM_SQL.format(table=table), {"rows": rows, "words": WORDS})
            step(f"Loaded {table}: {rows:,} rows in {time.perf_counter() - start:.0f} s")
        cur.execute(WIDE_SQL)
        # Set hint bits and statistics now, so no tool's first run pays for them.
        cur.execute("VACUUM ANALYZE")
        for table in ("lineitem", "lineitem_small", "wide"):
            cur.execute(f"SELECT count(*), pg_relation_size('{table}') FROM {table}")
            counts[table] = cur.fetchone()
    conn.close()

    owner = get_user_model().objects.create_superuser("bench", "bench@localhost", None)
    connection = Connection.objects.create(
        owner=owner,
        name="bench",
        kind="postgresql",
        host="127.0.0.1",
        port=pg.port,
        database=DATABASE,
        username="postgres",
        password=pg.password,
        sslmode="disable",
    )
    out = pg.root.parent / "out"
    out.mkdir()
    return {
        "pg": pg,
        "out": out,
        "counts": counts,
        "results": {},
        "spec": {
            "connection_id": connection.pk,
            "dsn": pg.dsn(DATABASE),
            "uri": f"postgresql://postgres:{pg.password}@127.0.0.1:{pg.port}/{DATABASE}",
            "password": pg.password,
            "port": pg.port,
        },
    }


def run_tool(context, tool, table, name, select="*") -> dict:
    """One export in a fresh process: wall, peak_rss_mb, rows, bytes, files; or error.

    `select` is the column list for the tools that take a query (not ADU, not COPY).
    """
    from django.conf import settings

    if tool.startswith("adu"):
        out = name  # a folder under the export root
        folder = Path(settings.EXPORT_ROOT) / name
    else:
        out = str(context["out"] / f"{name}.parquet")
        folder = None
    spec = {**context["spec"], "tool": tool, "table": table, "out": out, "select": select}
    result = run_child(spec)
    if "error" in result:
        return result
    result["folder"] = folder
    result["bytes"] = sum(os.path.getsize(f) for f in result["files"])
    if result["files"]:
        import pyarrow.parquet as pq

        result["rows"] = sum(pq.ParquetFile(f).metadata.num_rows for f in result["files"])
    return result


def run_child(spec: dict) -> dict:
    """This script as a child running one tool's spec: its result line, or its error."""
    env = {**os.environ, CHILD_ENV: json.dumps(spec)}
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, cwd=REPO
    )
    marked = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not marked:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(marked[-1][len(RESULT_MARK) :])


def remove_output(result):
    if result.get("folder"):
        shutil.rmtree(result["folder"], ignore_errors=True)
    else:
        for f in result.get("files", []):
            os.remove(f)


def take_turns(name: str, runs: int, labels: dict, export) -> dict:
    """Each tool once per run, the tools taking turns (drift on the machine touches them
    alike); per tool the median wall, the largest peak RSS and the last run's other
    figures, or the first error. `export(tool, run)` gives one result."""
    samples: dict[str, list] = {tool: [] for tool in labels}
    for run in range(1, runs + 1):
        line = []
        for tool in labels:
            result = export(tool, run)
            samples[tool].append(result)
            line.append(
                f"{labels[tool]} " + ("failed" if "error" in result else f"{result['wall']:.1f} s")
            )
        step(f"  {name} run {run}/{runs}: " + ", ".join(line))
    summary = {}
    for tool, results in samples.items():
        errors = [r["error"] for r in results if "error" in r]
        summary[tool] = (
            {"error": errors[0]}
            if errors
            else {
                **results[-1],
                "wall": statistics.median(r["wall"] for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            }
        )
    return summary


def bench_table(context, table, runs, tools=TOOLS) -> dict:
    def export(tool, run):
        result = run_tool(context, tool, table, f"{table}-{tool}-{run}")
        remove_output(result)  # the sizes are known; the disk is not needed any more
        return result

    return take_turns(table, runs, {tool: LABELS[tool] for tool in tools}, export)


def report_table(context, table, runs):
    rows, heap = context["counts"][table]
    results = context["results"][table]
    adu, duck = results.get("adu", {}), results.get("duckdb", {})
    print(
        f"\n{table}: {rows:,} rows, heap {heap / 2**20:,.0f} MB; "
        f"median wall of {runs} run(s), peak RSS = largest of the runs"
    )
    header = (
        f"{'tool':<12} {'wall s':>8} {'rows/s':>11} {'peak RSS MB':>12} {'output MB':>10} "
        f"{'time/ADU':>9} {'size/DuckDB':>12}"
    )
    print(header)
    print("-" * len(header))
    for tool in TOOLS:
        r = results[tool]
        if "error" in r:
            print(f"{LABELS[tool]:<12} failed: {r['error']}")
            continue
        time_ratio = ratio(r["wall"], adu.get("wall"))
        size_ratio = ratio(r["bytes"], duck.get("bytes")) if r["bytes"] else "-"
        size = f"{r['bytes'] / 2**20:,.1f}" if r["bytes"] else "-"
        print(
            f"{LABELS[tool]:<12} {r['wall']:>8.2f} {r['rows'] / r['wall']:>11,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {size:>10} {time_ratio:>9} {size_ratio:>12}"
        )
    for tool in TOOLS:
        r = results[tool]
        if "error" not in r and r["rows"] != rows:
            print(f"! {LABELS[tool]} exported {r['rows']:,} rows, the table holds {rows:,}")
    if "wall" in adu and "wall" in duck:
        print(
            f"ADU takes {adu['wall'] / duck['wall']:.2f}x DuckDB's wall time "
            f"({'faster' if adu['wall'] < duck['wall'] else 'slower'}); its file is "
            f"{adu['bytes'] / duck['bytes']:.2f}x DuckDB's size."
        )


LOAD_LABELS = {"adu_load": "ADU load", "duckdb_load": "DuckDB"}


def bench_load(context, runs) -> dict:
    """lineitem exported once by ADU, then loaded into a second database of the same
    server by each tool in turn (ADU replacing its table, DuckDB a new one each run)."""
    from django.contrib.auth import get_user_model

    from connections.models import Connection

    pg = context["pg"]
    admin = pg.connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE}_target")
    admin.close()
    target = Connection.objects.create(
        owner=get_user_model().objects.get(username="bench"),
        name="bench-target",
        kind="postgresql",
        host="127.0.0.1",
        port=pg.port,
        database=f"{DATABASE}_target",
        username="postgres",
        password=pg.password,
        sslmode="disable",
        is_target=True,
    )
    exported = run_tool(context, "adu", "lineitem", "lineitem-for-load")
    if "error" in exported:
        return {tool: exported for tool in LOAD_LABELS}
    spec = {
        **context["spec"],
        "target_id": target.pk,
        "target_dsn": pg.dsn(f"{DATABASE}_target"),
        "folder": str(exported["folder"]),
        "files": exported["files"],
    }

    results = take_turns(
        "load lineitem", runs, LOAD_LABELS, lambda tool, run: run_child({**spec, "tool": tool})
    )
    remove_output(exported)
    return results


TRANSFER_LABELS = {
    "adu_bundle": "bundle",
    "adu_receive": "receive",
    "adu_bundle_age": "bundle, age",
    "adu_receive_age": "receive, age",
}


def bench_transfer(context, runs) -> dict:
    """lineitem exported once by ADU, then bundled in volumes of 1 GiB and received, plain
    and encrypted: what carrying it costs on this machine's disk."""
    from transfer import keys

    exported = run_tool(context, "adu", "lineitem", "lineitem-for-transfer")
    if "error" in exported:
        return {tool: exported for tool in TRANSFER_LABELS}
    trusted = context["out"] / "exporter.pem"
    trusted.write_text(keys.public_pem(keys.signing_key()))
    spec = {
        **context["spec"],
        "folder": str(exported["folder"]),
        "rows": exported["rows"],
        "trusted": str(trusted),
        "recipient": str(keys.identity().to_public()),
    }

    def one(tool, run):
        media = context["out"] / ("media-age" if tool.endswith("_age") else "media")
        return run_child({**spec, "tool": tool, "media": str(media)})

    results = take_turns("transfer lineitem", runs, TRANSFER_LABELS, one)
    results["export_bytes"] = exported["bytes"]
    remove_output(exported)
    return results


def report_transfer(results, runs):
    size = results.pop("export_bytes", 0)
    print(
        f"\nCarrying lineitem's export ({size / 2**20:,.0f} MB of Parquet) across the gap: "
        f"bundled in volumes of 1 GiB and received (signatures, every hash, unpacked, "
        f"checked as adu_verify does); median wall of {runs} run(s)"
    )
    header = f"{'step':<14} {'wall s':>8} {'MB/s':>8} {'peak RSS MB':>12} {'time/plain':>11}"
    print(header)
    print("-" * len(header))
    for tool, label in TRANSFER_LABELS.items():
        r = results[tool]
        if "error" in r:
            print(f"{label:<14} failed: {r['error']}")
            continue
        plain = results.get(tool.removesuffix("_age"), {}).get("wall")
        print(
            f"{label:<14} {r['wall']:>8.2f} {size / 2**20 / r['wall']:>8,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {ratio(r['wall'], plain):>11}"
        )


def report_load(results, context, runs):
    rows = context["counts"]["lineitem"][0]
    print(
        f"\nLoading lineitem ({rows:,} rows) from ADU's export into a second database of "
        f"the same server; median wall of {runs} run(s)"
    )
    header = f"{'tool':<12} {'wall s':>8} {'rows/s':>11} {'peak RSS MB':>12} {'time/DuckDB':>12}"
    print(header)
    print("-" * len(header))
    duck = results.get("duckdb_load", {})
    for tool, label in LOAD_LABELS.items():
        r = results[tool]
        if "error" in r:
            print(f"{label:<12} failed: {r['error']}")
            continue
        print(
            f"{label:<12} {r['wall']:>8.2f} {r['rows'] / r['wall']:>11,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {ratio(r['wall'], duck.get('wall')):>12}"
        )
        if r["rows"] != rows:
            print(f"! {label} loaded {r['rows']:,} rows, the source holds {rows:,}")
    print(
        "ADU's load includes creating the table and checking the export's files, and the content "
        "fingerprints of the file and of the target (a read of every row on each side)."
    )


def ratio(value, base) -> str:
    return f"{value / base:.2f}x" if base else "-"


def report_validation(context):
    """What validating costs: ADU's default (a sample) and every row, against no validation."""
    results = context["results"]["lineitem"]
    off = results["adu_off"]
    print("\nValidation on lineitem (median wall; target: sample at most +15% over off):")
    if "error" in off:
        print(f"  not measured: ADU without validation failed: {off['error']}")
        return
    for tool, mode in (("adu_off", "off"), ("adu", "sample"), ("adu_full", "full")):
        r = results[tool]
        if "error" in r:
            print(f"  {mode:<7} failed: {r['error']}")
            continue
        overhead = (r["wall"] - off["wall"]) / off["wall"] * 100
        print(
            f"  {mode:<7} {r['wall']:6.2f} s  {overhead:+6.1f}%  peak RSS "
            f"{r['peak_rss_mb']:,.0f} MB"
        )


def report_flat_memory(context):
    small = context["results"]["lineitem_small"]["adu"]
    large = context["results"]["lineitem"]["adu"]
    print("\nFlat memory: ADU's peak RSS should not grow with the table.")
    if "error" in small or "error" in large:
        print("  not measured: an ADU export failed")
        return
    small_rows = context["counts"]["lineitem_small"][0]
    large_rows = context["counts"]["lineitem"][0]
    change = (large["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"] * 100
    print(
        f"  lineitem_small ({small_rows:,} rows): {small['peak_rss_mb']:,.0f} MB; "
        f"lineitem ({large_rows:,} rows, {large_rows / small_rows:.1f}x): "
        f"{large['peak_rss_mb']:,.0f} MB; difference {change:+.1f}%"
    )


# --------------------------------------------------------------------------------------
# Many small tables: what a whole schema costs per table
# --------------------------------------------------------------------------------------

SCHEMA_ROWS = 1000
# Each tool on the same schema: ADU with its default (2 tables at once) and with 4, in the
# command's process (--sync: the helpers are threads), and through the task cluster (two
# worker processes; peak RSS: the largest of its processes); DuckDB table after table
# through one attached database; pg_dump -Fd -j2.
SCHEMA_TOOLS = {
    "adu_schema": ("ADU", {"parallel": 2}),
    "adu_schema_4": ("ADU, parallel 4", {"parallel": 4}),
    "adu_cluster": ("ADU, cluster", {"parallel": 2, "cluster": True}),
    "duckdb_schema": ("DuckDB", {}),
    "pg_dump": ("pg_dump -j2", {}),
}

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};
DO $$
BEGIN
    FOR n IN 1..{tables} LOOP
        EXECUTE format(
            'CREATE TABLE {schema}.t%s (id integer PRIMARY KEY, name text NOT NULL, '
            'amount numeric(12,2), at timestamptz)', n);
        EXECUTE format(
            'INSERT INTO {schema}.t%s SELECT i, md5(i::text), i * 1.25, '
            'timestamptz ''2020-01-01 00:00+00'' + i * interval ''1 minute'' '
            'FROM generate_series(1, {rows}) AS i', n);
    END LOOP;
END $$;
"""


def load_schemas(context, sizes) -> list[str]:
    conn = context["pg"].connect(DATABASE)
    conn.autocommit = True
    schemas = []
    with conn.cursor() as cur:
        for tables in sizes:
            schema = f"many_{tables}"
            start = time.perf_counter()
            cur.execute(SCHEMA_SQL.format(schema=schema, tables=tables, rows=SCHEMA_ROWS))
            cur.execute("VACUUM ANALYZE")
            step(f"Loaded {schema}: {tables:,} tables of {SCHEMA_ROWS:,} rows in "
                 f"{time.perf_counter() - start:.0f} s")  # fmt: skip
            schemas.append(schema)
    conn.close()
    return schemas


def run_schema_tool(context, tool, schema, name) -> dict:
    from django.conf import settings

    folder = Path(settings.EXPORT_ROOT) / name if tool.startswith("adu") else context["out"] / name
    spec = {
        **context["spec"],
        **SCHEMA_TOOLS[tool][1],
        "tool": tool,
        "table": schema,
        "out": name if tool.startswith("adu") else str(folder),
    }
    proc = subprocess.run(
        [sys.executable, __file__],
        env={**os.environ, CHILD_ENV: json.dumps(spec)},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    marked = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    shutil.rmtree(folder, ignore_errors=True)
    if not marked:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(marked[-1][len(RESULT_MARK) :])


def bench_schema(context, schema, runs) -> dict:
    labels = {tool: label for tool, (label, _) in SCHEMA_TOOLS.items()}
    return take_turns(
        schema,
        runs,
        labels,
        lambda tool, run: run_schema_tool(context, tool, schema, f"{schema}-{tool}-{run}"),
    )


def report_schemas(results: dict, runs: int):
    print(f"\nMany small tables ({SCHEMA_ROWS:,} rows each; median wall of {runs} run(s)):")
    header = (
        f"{'schema':<11} {'tool':<16} {'wall s':>8} {'ms/table':>9} {'peak RSS MB':>12} "
        f"{'time/DuckDB':>12}"
    )
    print(header)
    print("-" * len(header))
    for schema, summary in results.items():
        tables = int(schema.split("_")[1])
        duck = summary["duckdb_schema"].get("wall")
        for tool, (label, _) in SCHEMA_TOOLS.items():
            r = summary[tool]
            if "error" in r:
                print(f"{schema:<11} {label:<16} failed: {r['error']}")
                continue
            print(
                f"{schema:<11} {label:<16} {r['wall']:>8.2f} {r['wall'] / tables * 1000:>9.1f} "
                f"{r['peak_rss_mb']:>12,.0f} {ratio(r['wall'], duck):>12}"
            )


# --------------------------------------------------------------------------------------
# Fidelity: every value of `wide`, read back and compared by the server
# --------------------------------------------------------------------------------------


UNREADABLE = object()  # pyarrow could not turn the stored value into a Python value


class Expression(str):
    """SQL for a stored value Python cannot hold (a BC date, a year past 9999), built from
    its raw integer, so the tool is judged on its file and not on Python's datetime."""

    def __repr__(self):
        return f"<{self}>"


def fidelity(context) -> dict:
    """Per tool: the differences on `wide`; for a tool that fails, its error and then each
    column exported on its own (with the id), so one unsupported value or type does not
    hide what the tool does with the other columns."""
    conn = context["pg"].connect(DATABASE)
    with conn.cursor() as cur:
        # Both sides of every comparison are printed in this session: UTC keeps a
        # timestamp written without its zone comparable.
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'wide'::regclass AND attnum > 0 AND NOT attisdropped "
            "AND attname <> 'id' ORDER BY attnum"
        )
        source = {"declared": dict(cur.fetchall())}
        cur.execute("SELECT id FROM wide")
        source["ids"] = {row[0] for row in cur.fetchall()}
    context["wide_columns"] = len(source["declared"])
    reports = {}
    for tool in PARQUET_TOOLS:
        start = time.perf_counter()
        report = check_export(context, conn, source, tool, list(source["declared"]))
        if "error" in report and tool != "adu":  # ADU exports tables, not queries
            report["by_column"] = {
                name: check_export(context, conn, source, tool, [name])
                for name in source["declared"]
            }
        report["seconds"] = time.perf_counter() - start
        reports[tool] = report
    conn.close()
    return reports


def check_export(context, conn, source, tool, columns) -> dict:
    import pyarrow.parquet as pq

    every = columns == list(source["declared"])
    select = "*" if every else ", ".join(["id", *columns])
    name = f"fidelity-{tool}" + ("" if every else f"-{columns[0]}")
    result = run_tool(context, tool, "wide", name, select)
    if "error" in result:
        return {"error": result["error"]}
    try:
        data = pq.read_table(result["files"], arrow_extensions_enabled=True)
        return compare(conn, source, columns, data)
    finally:
        remove_output(result)


def compare(conn, source, columns, data) -> dict:
    """{"missing": rows, "differences": {column: (count, example)}}; a missing row counts
    as a difference in every column."""
    if "id" not in data.column_names:
        return {"error": "the file has no id column"}
    ids = data.column("id").to_pylist()
    missing = len(source["ids"] - set(ids))
    differences = {}
    for name in columns:
        if name not in data.column_names:
            differences[name] = (len(source["ids"]), "column missing from the file")
            continue
        values = python_values(data.column(name))
        wrong = compare_column(conn, name, source["declared"][name], ids, values)
        if wrong or missing:
            differences[name] = (len(wrong) + missing, example(conn, name, wrong))
    return {"missing": missing, "differences": differences}


def example(conn, name, wrong) -> str:
    if not wrong:
        return ""
    # An ordinary row says more than an edge row (ids below 1), when there is one.
    row_id, value = next(((i, v) for i, v in wrong if i > 0), wrong[0])
    with conn.cursor() as cur:
        cur.execute(f"SELECT {name}::text FROM wide WHERE id = %s", (row_id,))
        [text] = cur.fetchone()
    shown = "unreadable by pyarrow" if value is UNREADABLE else repr(value)
    return f"e.g. id {row_id}: source {shorten(repr(text), 40)}, file {shorten(shown, 50)}"


def python_values(column) -> list:
    try:
        return column.to_pylist()
    except (ValueError, OverflowError, ArithmeticError, NotImplementedError):
        pass
    # Some value does not fit Python: convert one by one, dates and times that fail from
    # their raw integer.
    import pyarrow as pa

    kind = column.type
    raw = None
    if pa.types.is_date32(kind) or pa.types.is_timestamp(kind) or pa.types.is_time(kind):
        raw = column.cast(pa.int32() if kind.bit_width == 32 else pa.int64()).to_pylist()
    values = []
    for i, scalar in enumerate(column):
        try:
            values.append(scalar.as_py())
        except (ValueError, OverflowError, ArithmeticError, NotImplementedError):
            values.append(raw_expression(kind, raw[i]) if raw else UNREADABLE)
    return values


def raw_expression(arrow_type, number) -> Expression:
    """The value as SQL arithmetic on the epoch: days and microseconds stay exact."""
    import pyarrow as pa

    if arrow_type == pa.date32():
        return Expression(f"date '1970-01-01' + {number}")
    per_second = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[arrow_type.unit]
    days, rest = divmod(number, 86400 * per_second)
    rest = Decimal(rest) / per_second
    if pa.types.is_timestamp(arrow_type):
        base = "timestamptz '1970-01-01 00:00+00'" if arrow_type.tz else "timestamp '1970-01-01'"
    else:
        base = "time '00:00'"
    return Expression(f"{base} + interval '{days} days {rest} seconds'")


def compare_column(conn, name, type_name, ids, values) -> list:
    """(id, value) of every value that differs from the source or cannot be cast back."""
    import psycopg2

    wrong, literals = [], []
    with conn.cursor() as cur:
        for row_id, value in zip(ids, values, strict=True):
            try:
                if value is UNREADABLE:
                    raise ValueError(value)
                if isinstance(value, Expression):
                    literal = str(value)
                else:
                    literal = cur.mogrify("%s", (adapt(value),)).decode()
                literals.append((row_id, value, literal))
            except (ValueError, TypeError, psycopg2.Error):
                wrong.append((row_id, value))
        if not literals:
            return wrong
        rows = ",".join(f"({row_id}, CAST({lit} AS {type_name}))" for row_id, _, lit in literals)
        try:
            # One query for the whole column; a value that cannot be cast fails it...
            cur.execute(
                f"SELECT v.id FROM (VALUES {rows}) AS v(id, value) JOIN wide AS w "
                f"ON w.id = v.id WHERE (w.{name})::text IS DISTINCT FROM v.value::text"
            )
            differing = {row[0] for row in cur.fetchall()}
            wrong += [(i, v) for i, v, _ in literals if i in differing]
        except psycopg2.Error:
            # ...then each value on its own finds which (autocommit: no aborted
            # transaction to roll back).
            for row_id, value, lit in literals:
                try:
                    cur.execute(
                        f"SELECT (w.{name})::text IS NOT DISTINCT FROM "
                        f"CAST({lit} AS {type_name})::text FROM wide AS w WHERE w.id = %s",
                        (row_id,),
                    )
                    same = cur.fetchone()[0]
                except psycopg2.Error:
                    same = False
                if not same:
                    wrong.append((row_id, value))
    return sorted(wrong, key=lambda pair: pair[0])


def adapt(value):
    """A Python value as psycopg2 can send it and the server can cast it."""
    import psycopg2
    import psycopg2.extras
    import pyarrow as pa

    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal) and not value.is_finite():
        # psycopg2 would send every non-finite Decimal as NaN.
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return psycopg2.Binary(value)
    if isinstance(value, dict):
        return psycopg2.extras.Json(value)
    if isinstance(value, list):
        return [adapt(v) for v in value]
    if isinstance(value, pa.MonthDayNano):
        seconds = Decimal(value.nanoseconds).scaleb(-9)
        return f"{value.months} mons {value.days} days {seconds} seconds"
    return value


def shorten(text, limit) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_fidelity(context, reports):
    rows = context["counts"]["wide"][0]
    columns = context["wide_columns"]
    print(f"\nFidelity on wide ({rows:,} rows, {columns} typed columns + id), value by value:")
    for tool in PARQUET_TOOLS:
        report = reports[tool]
        label = f"  {LABELS[tool]:<12} "
        if "error" not in report:
            print(label + summary(report) + f" (checked in {report['seconds']:.0f} s)")
            print_differences(report["differences"])
            continue
        print(label + f"failed: {report['error']}")
        by_column = report.get("by_column")
        if not by_column:
            continue
        failed = {n: r["error"] for n, r in by_column.items() if "error" in r}
        differences = {}
        for r in by_column.values():
            differences.update(r.get("differences", {}))
        total = sum(count for count, _ in differences.values())
        print(
            f"{'':<15}each column alone (SELECT id, column): {len(failed)} column(s) failed, "
            f"{total:,} differing values in {len(differences)} column(s) "
            f"(checked in {report['seconds']:.0f} s)"
        )
        for name, error in failed.items():
            print(f"      {name:<14} failed: {shorten(error, 90)}")
        print_differences(differences)


def summary(report) -> str:
    differences = report["differences"]
    total = sum(count for count, _ in differences.values())
    missing = f", {report['missing']:,} rows missing" if report["missing"] else ""
    return f"{total:,} differing values in {len(differences)} column(s){missing}"


def print_differences(differences):
    for name, (count, text) in differences.items():
        print(f"      {name:<14} {count:>6,}  {text}")


def first_line(error) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def sql_string(text) -> str:
    return "'" + text.replace("'", "''") + "'"


if __name__ == "__main__":
    if os.environ.get(CHILD_ENV):
        child_main(json.loads(os.environ[CHILD_ENV]))
    else:
        main()
