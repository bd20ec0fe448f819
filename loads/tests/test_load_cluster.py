"""Loads on a real Django-Q2 cluster (`manage.py qcluster` subprocesses): queued, followed,
cancelled mid-table, and resumed after the cluster is killed.

A slow load: the target's table is there already with a trigger that sleeps a little for
each row, and the load appends to it.
"""

import time

import pytest
from django.core.management import call_command

from exports.tasks import sweep
from loads.creation import create_load
from loads.models import Load, TableLoad
from loads.tasks import start_load
from tests.factories import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def slow_target(target_db, per_row_ms: float):
    target_db.execute(
        "CREATE TABLE t (i int, h text);"
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$BEGIN PERFORM pg_sleep({per_row_ms / 1000}); RETURN NEW; END$$;"
        "CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow()"
    )


@pytest.fixture
def exported(source_db, owner, export):
    source_db.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) AS h FROM generate_series(1, 20000) i;"
        "CREATE TABLE u AS SELECT i FROM generate_series(1, 10) i"
    )
    return export(source_db.connection(owner), tables=["public.t", "public.u"])


def ended(load):
    return lambda: Load.objects.get(pk=load.pk).status in Load.FINISHED


def test_a_queued_load_runs_on_the_cluster(exported, target_db, owner, clusters, capsys):
    target_db.connection(owner, name="far", is_target=True)
    clusters()
    with pytest.raises(SystemExit) as exit_:
        call_command("adu_load", str(exported.folder()), "far", "--wait", "--as", "owner")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "public.t" in out and "20,000 rows" in out
    [load] = Load.objects.all()
    assert load.status == Load.Status.COMPLETE
    assert target_db.execute("SELECT count(*) FROM t") == [(20000,)]


def test_cancel_mid_table_rolls_it_back(exported, target_db, owner, clusters):
    slow_target(target_db, 1)
    target = target_db.connection(owner, name="far", is_target=True)
    load = create_load(owner, exported.folder(), target, if_exists="append", parallel=1)
    clusters()
    start_load(load)
    wait_until(lambda: load.tables.filter(status=TableLoad.Status.LOADING).exists(), 60, "a table")
    time.sleep(2)
    cancelled_at = time.monotonic()
    call_command("adu_loads", "--cancel", str(load.pk), "--as", "owner")
    wait_until(ended(load), 15, "the load to end after cancel")
    assert time.monotonic() - cancelled_at < 15
    load.refresh_from_db()
    assert load.status == Load.Status.CANCELLED
    assert target_db.execute("SELECT count(*) FROM t") == [(0,)]
    assert target_db.execute("SELECT to_regclass('public.u')") == [(None,)]


def test_a_killed_cluster_is_resumed_with_the_tables_not_committed(
    exported, target_db, owner, clusters, settings
):
    slow_target(target_db, 0.3)
    target = target_db.connection(owner, name="far", is_target=True)
    load = create_load(owner, exported.folder(), target, if_exists="append", parallel=1)
    first = clusters()
    start_load(load)
    wait_until(
        lambda: load.tables.filter(table="t", status=TableLoad.Status.LOADING).exists(),
        60,
        "table t to start",
    )
    time.sleep(2)
    first.kill()
    assert Load.objects.get(pk=load.pk).status == Load.Status.RUNNING
    # The sweep (every minute on a real cluster) is called here once the beat is stale.
    time.sleep(settings.HEARTBEAT_TIMEOUT + 1)
    sweep()
    assert Load.objects.get(pk=load.pk).status == Load.Status.QUEUED
    clusters()
    wait_until(ended(load), 120, "the load to be resumed")
    load.refresh_from_db()
    assert load.recoveries == 1
    assert load.status == Load.Status.COMPLETE, list(load.tables.values_list("error", flat=True))
    # Once, not once and a half: the dead worker's rows were rolled back by the server.
    assert target_db.execute("SELECT count(*), count(DISTINCT i) FROM t") == [(20000, 20000)]
