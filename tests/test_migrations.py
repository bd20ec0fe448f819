"""The squashed migrations of connections/ and exports/: a database that ran the old ones
takes the squashed ones as applied, and a fresh one gets the same tables and schedule."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django_q.models import Schedule

SQUASHED = {
    ("connections", "0001_squashed_0005_labels"): 5,
    ("exports", "0001_squashed_0011_job_log_token"): 11,
}


@pytest.mark.django_db
def test_a_database_migrated_before_the_squash_needs_nothing_more():
    recorder = MigrationRecorder(connection)
    loader = MigrationLoader(connection)
    old_names = []
    for key, count in SQUASHED.items():
        replaces = loader.disk_migrations[key].replaces
        assert len(replaces) == count
        old_names += replaces
    # The table of applied migrations as a database migrated before the squash has it.
    recorder.migration_qs.filter(
        app__in=[app for app, _ in SQUASHED], name__in=[name for _, name in SQUASHED]
    ).delete()
    for app, name in old_names:
        recorder.record_applied(app, name)
    executor = MigrationExecutor(connection)
    assert set(SQUASHED) <= set(executor.loader.applied_migrations)
    # What `migrate` would do now: nothing.
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


@pytest.mark.django_db
def test_a_fresh_database_has_the_sweep_schedule():
    sweep = Schedule.objects.get(name="adu-sweep")
    assert (sweep.func, sweep.schedule_type, sweep.minutes, sweep.repeats) == (
        "exports.tasks.sweep",
        Schedule.MINUTES,
        1,
        -1,
    )
