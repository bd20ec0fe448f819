"""A manifest is hostile: whoever handled the media can rewrite it and seal it again with
a checksum of their own. Nothing it says may run as SQL in the target; names go out as
identifiers, a type must parse as one type name, a check as one allowed condition.

And faults: a lossy step between the file and the target is caught by the fingerprints,
a killed session or a cancel leaves nothing of its table behind.
"""

import json
import threading
import time

import pytest

from exports.manifest import CHECKSUM_KEY, checksum
from loads import copy as load_copy
from loads.creation import create_load
from loads.engine import run_load
from loads.models import Load, TableLoad

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def target_db(source_server):
    from tests.factories import throwaway_database

    with throwaway_database(source_server) as db:
        db.execute("CREATE TABLE victim (x int); INSERT INTO victim VALUES (1)")
        yield db


@pytest.fixture
def exported(source_db, owner, export):
    source_db.execute(
        "CREATE TYPE tone AS ENUM ('lo', 'hi');"
        "CREATE DOMAIN positive AS integer CHECK (VALUE > 0);"
        'CREATE TABLE "we""ird" ("a b" int PRIMARY KEY, t tone, p positive CHECK (p < 100));'
        """INSERT INTO "we""ird" SELECT i, 'hi', i FROM generate_series(1, 50) i;"""
        "CREATE TABLE plain (x int); INSERT INTO plain VALUES (7)"
    )
    return export(source_db.connection(owner), tables=['public.we"ird', "public.plain"])


def reseal(job, change):
    """Rewrite the manifest as an attacker would: change it, then compute its checksum."""
    path = job.manifest_path()
    manifest = json.loads(path.read_text())
    change(manifest)
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    manifest[CHECKSUM_KEY] = checksum(body)
    path.write_text(json.dumps(manifest))


def table_of(manifest, name):
    return next(t for t in manifest["tables"] if t["table"] == name)


def victim_intact(target_db):
    return target_db.execute("SELECT x FROM victim") == [(1,)]


def test_a_quoted_name_loads_as_a_name(exported, target_db, target, owner):
    load = run_load(create_load(owner, exported.folder(), target).pk)
    assert load.status == Load.Status.COMPLETE, list(load.tables.values_list("error", flat=True))
    assert target_db.execute('SELECT count(*), sum("a b") FROM "we""ird"') == [(50, 1275)]
    assert target_db.execute("SELECT 5::positive") == [(5,)]
    with pytest.raises(Exception, match="violates check constraint"):
        target_db.execute("SELECT (-1)::positive")


@pytest.mark.parametrize(
    "source_type",
    [
        "integer); DROP TABLE victim; --",
        "integer, evil int",
        "integer DEFAULT pg_sleep(1)",
        'integer COLLATE "C"',
        "int[] GENERATED ALWAYS AS (1) STORED",
        "SETOF integer",
        "integer\x00",
    ],
)
def test_a_column_type_that_is_more_than_a_type_is_refused(
    exported, target_db, target, owner, source_type
):
    def change(manifest):
        table_of(manifest, "plain")["columns"][0]["source_type"] = source_type

    reseal(exported, change)
    load = run_load(create_load(owner, exported.folder(), target).pk)
    runs = {t.table: t for t in load.tables.all()}
    assert runs["plain"].status == TableLoad.Status.FAILED
    assert runs["plain"].error.startswith("The manifest names a column type ADU does not accept")
    assert runs['we"ird'].status == TableLoad.Status.LOADED
    assert victim_intact(target_db)
    assert target_db.execute("SELECT to_regclass('public.plain')") == [(None,)]


def test_checks_and_defaults_that_would_run_anything_are_left_out(
    exported, target_db, target, owner
):
    evil = "CHECK ((p < 100)); DROP TABLE victim; --"

    def change(manifest):
        weird = table_of(manifest, 'we"ird')
        for constraint in weird["constraints"]:
            if constraint["kind"] == "check":
                constraint["definition"] = evil
        for definition in weird["types"]["definitions"]:
            if definition["name"] == "positive":
                definition["default"] = "pg_sleep(5)"
                definition["checks"].append(
                    {
                        "name": "reads",
                        "definition": "CHECK ((VALUE > (SELECT count(*) FROM victim)))",
                    }
                )

    reseal(exported, change)
    started = time.monotonic()
    load = run_load(create_load(owner, exported.folder(), target).pk)
    assert time.monotonic() - started < 5
    run = load.tables.get(table='we"ird')
    assert run.status == TableLoad.Status.LOADED, run.error
    assert any(note.startswith("check ") for note in run.notes), run.notes
    assert victim_intact(target_db)
    checks = target_db.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'c' "
        "AND connamespace = 'public'::regnamespace ORDER BY conname"
    )
    assert checks == [("positive_check",)]  # the domain's own, not the table's rewritten one
    assert "domain positive" in " ".join(run.notes)  # its reading check, left out
    assert target_db.execute("SELECT typdefault FROM pg_type WHERE typname = 'positive'") == [
        (None,)
    ]


def test_a_type_name_and_labels_with_quotes_stay_names_and_labels(
    exported, target_db, target, owner
):
    def change(manifest):
        weird = table_of(manifest, 'we"ird')
        for definition in weird["types"]["definitions"]:
            if definition["name"] == "tone":
                definition["labels"] = ["lo", "hi", "x'); DROP TABLE victim; --"]

    reseal(exported, change)
    load = run_load(create_load(owner, exported.folder(), target).pk)
    assert load.tables.get(table='we"ird').status == TableLoad.Status.LOADED
    assert target_db.execute("SELECT array_length(enum_range(NULL::tone), 1)") == [(3,)]
    assert victim_intact(target_db)


@pytest.mark.parametrize("form", ["binary", "csv"])
def test_a_lossy_step_between_file_and_target_is_caught_and_nothing_kept(
    exported, target_db, target, owner, monkeypatch, form
):
    """Rows changed after the file's fingerprint took them and before the COPY, in either
    of its forms (a bug in an encoder, say)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    real = load_copy.CopyStream
    chosen = []

    def off_by_one(batch):
        if "x" in batch.schema.names:
            x = batch.column(0)
            return pa.RecordBatch.from_arrays([pc.add(x, pa.scalar(1, x.type))], names=["x"])
        return batch

    def lossy(batches, copy_form):
        chosen.append(copy_form.name)
        return real(map(off_by_one, batches), copy_form)

    if form == "csv":
        monkeypatch.setattr(
            load_copy, "copy_form", lambda *_: load_copy.CopyForm("csv", load_copy._csv)
        )
    monkeypatch.setattr(load_copy, "CopyStream", lossy)
    load = run_load(create_load(owner, exported.folder(), target).pk)
    run = load.tables.get(table="plain")
    assert run.status == TableLoad.Status.FAILED
    assert run.error.startswith("The rows in the target differ from the file")
    assert run.file_fingerprint["rows"] == run.target_fingerprint["rows"] == 1
    assert run.file_fingerprint["digest"] != run.target_fingerprint["digest"]
    assert target_db.execute("SELECT to_regclass('public.plain')") == [(None,)]
    assert load.status == Load.Status.COMPLETE_WITH_ERRORS
    assert form in chosen


def test_a_file_that_fails_to_read_mid_copy_is_named_not_blamed_on_the_target(
    exported, target_db, target, owner, monkeypatch
):
    """A file changed or unreadable after the export was checked (a disk error, say)."""
    import pyarrow.parquet as pq

    real = pq.ParquetFile.iter_batches

    def failing(self, *args, **kwargs):
        yield from real(self, *args, **kwargs)
        raise OSError("Input/output error")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", failing)
    load = run_load(create_load(owner, exported.folder(), target).pk)
    run = load.tables.get(table="plain")
    assert run.status == TableLoad.Status.FAILED
    assert run.error == (
        "Reading the export's files of public.plain failed (Input/output error): nothing of it"
        " was kept."
    )
    assert target_db.execute("SELECT to_regclass('public.plain')") == [(None,)]


def test_a_session_killed_mid_copy_leaves_nothing(source_db, target_db, target, owner, export):
    source_db.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS h FROM generate_series(1, 600000) i"
    )
    job = export(source_db.connection(owner), tables=["public.big"])
    load = create_load(owner, job.folder(), target)
    stop = threading.Event()

    def kill_the_copy():
        while not stop.is_set():
            killed = target_db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'COPY%%' AND state = 'active' AND pid <> pg_backend_pid()"
            )
            if killed:
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_copy)
    killer.start()
    try:
        load = run_load(load.pk)
    finally:
        stop.set()
        killer.join()
    [run] = load.tables.all()
    assert run.status == TableLoad.Status.FAILED
    assert "\n" not in run.error and "Traceback" not in run.error
    assert load.status == Load.Status.FAILED
    assert target_db.execute("SELECT to_regclass('public.big')") == [(None,)]


def test_no_create_permission_is_one_sentence(source_db, target_db, owner, export):
    source_db.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    job = export(source_db.connection(owner), tables=["public.t"])
    target_db.execute(
        "CREATE ROLE loader_no_create LOGIN PASSWORD 'pw-123';"
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        f'REVOKE CREATE ON DATABASE "{target_db.name}" FROM PUBLIC'
    )
    try:
        weak = target_db.connection(
            owner, name="weak", is_target=True, username="loader_no_create", password="pw-123"
        )
        load = run_load(create_load(owner, job.folder(), weak).pk)
        [run] = load.tables.all()
        assert load.status == Load.Status.FAILED
        assert "permission denied" in run.error.lower() or "permission" in load.error.lower()
        assert "pw-123" not in run.error + load.error
    finally:
        target_db.execute("DROP OWNED BY loader_no_create; DROP ROLE loader_no_create")


def test_an_unreachable_target_is_one_sentence(exported, owner, source_server):
    from connections.models import Connection

    far = Connection.objects.create(
        owner=owner, name="gone", host="127.0.0.1", port=1, database="x", username="u",
        password="secret-pw", sslmode="disable", connect_timeout=2, is_target=True,
    )  # fmt: skip
    load = run_load(create_load(owner, exported.folder(), far).pk)
    assert load.status == Load.Status.FAILED
    assert load.error and "\n" not in load.error and "secret-pw" not in load.error
    assert set(load.tables.values_list("status", flat=True)) == {TableLoad.Status.FAILED}


def test_a_type_the_target_lacks_fails_its_tables_before_any_row_moves(
    source_db, target_db, target, owner, export
):
    source_db.execute(
        "CREATE EXTENSION citext; CREATE TYPE size AS ENUM ('s', 'm');"
        "CREATE DOMAIN email AS citext CHECK (VALUE LIKE '%%@%%');"
        "CREATE TABLE people (e email, s size); INSERT INTO people VALUES ('A@b', 's');"
        "CREATE TABLE plain (x int); INSERT INTO plain VALUES (7)"
    )
    job = export(source_db.connection(owner), tables=["public.people", "public.plain"])
    load = run_load(create_load(owner, job.folder(), target).pk)
    runs = {t.table: t for t in load.tables.all()}
    assert runs["people"].status == TableLoad.Status.FAILED
    assert runs["people"].error.startswith("Type public.citext (base) is not PostgreSQL's own")
    assert runs["plain"].status == TableLoad.Status.LOADED
    assert target_db.execute("SELECT to_regclass('public.people')") == [(None,)]

    # With the extension there, the same export loads (the type is the target's own).
    target_db.execute("CREATE EXTENSION citext")
    load = run_load(create_load(owner, job.folder(), target, tables=["public.people"]).pk)
    [run] = load.tables.all()
    assert run.status == TableLoad.Status.LOADED, run.error
    assert target_db.execute("SELECT e::text, s::text FROM people") == [("A@b", "s")]


def test_a_target_out_of_temporary_space_fails_the_table_and_keeps_nothing(
    source_db, target_db, target, owner, export
):
    # The primary key's index is built after the rows, sorting them: with little memory
    # the sort spills to temporary files, which the target's limit refuses (as a full
    # disk would).
    source_db.execute(
        "CREATE TABLE big (id int PRIMARY KEY, h text);"
        "INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 200000) i;"
        "CREATE TABLE small (x int); INSERT INTO small VALUES (1)"
    )
    job = export(source_db.connection(owner), tables=["public.big", "public.small"])
    target_db.execute(
        f"ALTER DATABASE \"{target_db.name}\" SET temp_file_limit = '256kB';"
        f"ALTER DATABASE \"{target_db.name}\" SET maintenance_work_mem = '1MB'"
    )
    load = run_load(create_load(owner, job.folder(), target).pk)
    runs = {t.table: t for t in load.tables.all()}
    assert runs["big"].status == TableLoad.Status.FAILED
    assert runs["big"].error == (
        "The target stopped the load of public.big: temporary file size exceeds "
        "temp_file_limit (256kB); nothing of it was kept."
    )
    assert runs["small"].status == TableLoad.Status.LOADED
    assert target_db.execute("SELECT to_regclass('public.big')") == [(None,)]


def test_a_manifest_swapped_after_the_load_was_made_is_refused(exported, target_db, target, owner):
    load = create_load(owner, exported.folder(), target)

    def change(manifest):
        manifest["tables"] = [t for t in manifest["tables"] if t["table"] != "plain"]

    reseal(exported, change)
    load = run_load(load.pk)
    assert load.status == Load.Status.FAILED
    assert load.error.startswith(f"The manifest in {exported.folder()} is not the one this load")
    assert set(load.tables.values_list("status", flat=True)) == {TableLoad.Status.FAILED}
    assert target_db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (1,)  # the victim alone
    ]


def test_a_shared_target_is_for_reading_only_its_owner_loads_into_it(
    exported, target_db, target, owner, django_user_model, settings, capsys
):
    """A teammate may export from a connection shared with their group; writing into it
    is its owner's (or an admin's) to do, on every way in."""
    import shutil

    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from exports.selection import BadRequest
    from loads.forms import NewLoadForm
    from tests.factories import user_with_role

    analysts = Group.objects.create(name="analysts")
    target.shared_with.add(analysts)
    teammate = user_with_role(django_user_model, "teammate", "ADU Operator")
    teammate.groups.add(analysts)
    carried = settings.RECEIVE_ROOT / "carried"
    shutil.copytree(exported.folder(), carried)
    with pytest.raises(BadRequest, match="only its owner or an ADU Admin may load into it"):
        create_load(teammate, carried, target)
    assert target not in NewLoadForm(user=teammate).fields["target"].queryset
    with pytest.raises(Exception, match="only its owner or an ADU Admin may load into it"):
        call_command("adu_load", str(carried), "far", "--sync", "--as", "teammate")
    assert not Load.objects.exists()
    assert target_db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (1,)  # the victim alone
    ]


def test_a_folder_that_leaves_the_roots_by_a_link_or_dots_is_refused(
    exported, target, owner, settings, tmp_path
):
    from exports.selection import BadRequest

    settings.RECEIVE_ROOT.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (settings.RECEIVE_ROOT / "link").symlink_to(outside)
    for folder in (
        settings.RECEIVE_ROOT / "link",
        settings.RECEIVE_ROOT / ".." / "elsewhere",
        settings.RECEIVE_ROOT,
        "/etc",
    ):
        with pytest.raises(BadRequest, match="is not under the receive root"):
            create_load(owner, folder, target)


def test_another_users_load_is_not_found_on_any_command(exported, target, owner, outsider, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    load = create_load(owner, exported.folder(), target)
    for flag in ("--cancel", "--log"):
        with pytest.raises(CommandError, match=f"There is no load {load.pk}."):
            call_command("adu_loads", flag, str(load.pk), "--as", outsider.username)
    assert Load.objects.get(pk=load.pk).cancel_requested is False
