"""Export plans: schedules (cron in a time zone, intervals), runs that never overlap, runs
missed while the cluster was down made up once, adu_plan, and the refusals of bad input."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from audit.models import AuditEvent
from exports.models import ExportJob
from plans import runs
from plans.models import ExportPlan, Notification, PlanRefused, PlanRun
from tests.factories import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def make_plan(connection, owner, **fields):
    defaults = {
        "name": "nightly",
        "owner": owner,
        "connection": connection,
        "definition": {"tables": ["public.t"]},
        "every_minutes": 1,
    }
    return ExportPlan.create(**{**defaults, **fields})


@pytest.fixture
def connection(source_db, owner):
    source_db.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);")
    return source_db.connection(owner)


def test_a_cron_runs_in_its_time_zone_and_missed_runs_are_made_up_once(connection, owner):
    plan = make_plan(
        connection, owner, every_minutes=None, cron="0 2 * * *", timezone="Europe/Paris"
    )
    winter = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert plan.next_after(winter) == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # 02:00 CET
    summer = datetime(2026, 7, 5, 12, 0, tzinfo=UTC)
    assert plan.next_after(summer) == datetime(2026, 7, 6, 0, 0, tzinfo=UTC)  # 02:00 CEST

    every = make_plan(connection, owner, name="often", every_minutes=10)
    due = timezone.now() - timedelta(minutes=95)  # nine runs missed while the cluster was down
    ExportPlan.objects.filter(pk=every.pk).update(next_run_at=due)
    started = []
    ran = runs.run_due(start=started.append)
    assert [r.plan.name for r in ran] == ["often"] and len(started) == 1
    every.refresh_from_db()
    assert timezone.now() < every.next_run_at <= timezone.now() + timedelta(minutes=10)
    assert (every.next_run_at - due) % timedelta(minutes=10) == timedelta(0)  # on its beat
    assert runs.run_due(start=started.append) == []  # claimed: not again


def test_a_run_due_while_the_last_job_runs_is_skipped_and_recorded(connection, owner):
    plan = make_plan(connection, owner)
    first = runs.run_plan(plan, start=lambda job: None)  # queued: not finished
    assert first.outcome == PlanRun.Outcome.STARTED and first.job.folder().is_dir()
    second = runs.run_plan(plan, trigger="schedule", start=lambda job: None)
    assert second.outcome == PlanRun.Outcome.SKIPPED and second.job is None
    assert f"Job {first.job_id} of the last run is still queued" in second.note
    assert AuditEvent.objects.filter(action="plan_run", details__outcome="skipped").count() == 1
    ExportJob.objects.filter(pk=first.job_id).update(status="complete")
    third = runs.run_plan(plan, start=lambda job: None)
    assert third.outcome == PlanRun.Outcome.STARTED and third.job_id != first.job_id
    assert third.job.predecessor_id is None  # the first wrote no manifest: not a link


def test_a_run_that_cannot_start_is_recorded_with_its_sentence(connection, owner, source_db):
    plan = make_plan(connection, owner, definition={"tables": ["public.t"], "queries": ["gone"]})
    run = runs.run_plan(plan, start=lambda job: None)
    assert run.outcome == PlanRun.Outcome.REFUSED and run.note == (
        "Connection 'source' has no saved query 'gone'."
    )


@pytest.mark.parametrize(
    "fields, field, says",
    [
        ({"name": "../x"}, "name", "is not a plan name"),
        ({"cron": "0 2 * * *"}, "cron", "not both and not neither"),
        ({"every_minutes": None}, "cron", "not both and not neither"),
        ({"every_minutes": None, "cron": "61 * * * *"}, "cron", "is not a cron expression"),
        ({"every_minutes": None, "cron": "@reboot"}, "cron", "is not a cron expression"),
        ({"every_minutes": 0}, "every_minutes", "from 1 to a year"),
        ({"timezone": "Mars/Olympus"}, "timezone", "is not a time zone"),
        ({"folder_pattern": "{plan}/../{x}"}, "folder_pattern", "is not a folder pattern"),
        ({"folder_pattern": "../{plan}"}, "folder_pattern", "is not a folder pattern"),
        ({"folder_pattern": "{plan.__class__}"}, "folder_pattern", "is not a folder pattern"),
        ({"folder_pattern": "{plan.__len__}x"}, "folder_pattern", "is not a folder pattern"),
        ({"folder_pattern": "{date!r}"}, "folder_pattern", "is not a folder pattern"),
        ({"folder_pattern": "{run:>99}"}, "folder_pattern", "is not a folder pattern"),
        ({"incremental": ["nodot"]}, "incremental", "is not SCHEMA.TABLE"),
        ({"definition": {"options": {"parallel": 0}}}, "options.parallel", "parallel"),
    ],
)
def test_a_bad_plan_is_refused_with_a_sentence_and_nothing_saved(
    connection, owner, fields, field, says
):
    with pytest.raises(PlanRefused, match=says) as refused:
        make_plan(connection, owner, **fields)
    assert refused.value.field == field
    assert not ExportPlan.objects.exists()


def test_adu_plan_adds_lists_runs_pauses_and_removes(connection, owner, capsys):
    call_command(
        "adu_plan", "add", "sales", "--connection", "source", "--tables", "public.t",
        "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--incremental", "public.t",
        "--email", "dba@example.org", "--webhook", "http://127.0.0.1:9/hook", "--as", owner.username,
    )  # fmt: skip
    said = capsys.readouterr().out
    assert "Saved plan sales: cron '0 2 * * *' (Europe/Paris), next run" in said
    assert "its signing secret, shown only now:" in said
    plan = ExportPlan.objects.get(name="sales")
    secret = said.split("shown only now: ")[1].split()[0]
    hook = plan.notifications.get(channel="webhook")
    assert str(hook.secret) == secret
    assert secret not in str(AuditEvent.objects.filter(action="plan_create").values())
    call_command("adu_plan", "list", "--as", owner.username)
    assert "sales" in capsys.readouterr().out
    call_command("adu_plan", "pause", "sales", "--as", owner.username)
    plan.refresh_from_db()
    assert plan.paused and plan.next_run_at is None
    call_command("adu_plan", "resume", "sales", "--as", owner.username)
    plan.refresh_from_db()
    assert not plan.paused and plan.next_run_at > timezone.now()
    for bad, says in [
        (["add", "sales", "--connection", "source", "--every", "5"], "already exists"),
        (
            ["add", "x", "--connection", "source", "--every", "5", "--email", "nope"],
            "is not an e-mail",
        ),
        (
            ["add", "x", "--connection", "source", "--every", "5", "--webhook", "ftp://h/"],
            r"an http\(s\) URL",
        ),
        (["add", "x", "--connection", "nowhere", "--every", "5"], "nowhere"),
        (["run", "nothing"], "There is no plan named 'nothing'"),
    ]:
        with pytest.raises(CommandError, match=says):
            call_command("adu_plan", *bad, "--as", owner.username)
    call_command("adu_plan", "remove", "sales", "--as", owner.username)
    assert not ExportPlan.objects.exists() and not Notification.objects.exists()


def test_a_viewer_sees_no_plan_to_run(connection, owner, viewer):
    make_plan(connection, owner)
    with pytest.raises(CommandError):
        call_command("adu_plan", "run", "nightly", "--as", viewer.username)
    assert not PlanRun.objects.exists()


@pytest.mark.jobs
@pytest.mark.cluster
def test_a_plan_every_minute_runs_twice_on_the_cluster_and_never_in_parallel(
    source_db, owner, clusters
):
    """The cluster runs the plans' tick (plans.tasks.run_due, which its "adu-plans"
    schedule calls every minute: see the next test); the minutes between two ticks are
    brought forward so that the test takes seconds, not minutes."""
    # Its read waits for a lock the test holds: the first job runs until let go.
    source_db.execute("CREATE TABLE slow AS SELECT generate_series(1, 1000) AS i")
    plan = make_plan(
        source_db.connection(owner),
        owner,
        definition={"tables": ["public.slow"], "options": {"lock_timeout": 300}},
    )
    hold = source_db.server.connect(source_db.name)
    hold.autocommit = False
    hold.cursor().execute("LOCK TABLE slow IN ACCESS EXCLUSIVE MODE")

    def a_minute_later():
        ExportPlan.objects.filter(pk=plan.pk).update(
            next_run_at=timezone.now() - timedelta(seconds=1)
        )
        async_task("plans.tasks.run_due")

    clusters()
    a_minute_later()
    wait_until(lambda: plan.runs.count() == 1, 60, "the first run")
    first = plan.runs.get()
    assert first.outcome == "started" and first.trigger == "schedule", first.note
    wait_until(lambda: ExportJob.objects.get(pk=first.job_id).status == "running", 60, "job 1")
    a_minute_later()  # due again while its job is still at work
    wait_until(lambda: plan.runs.count() == 2, 60, "the second time it was due")
    skipped = plan.runs.first()
    assert skipped.outcome == "skipped", (skipped.outcome, skipped.note)
    hold.close()  # the first job may end now
    wait_until(lambda: ExportJob.objects.get(pk=first.job_id).is_finished, 60, "the first job")
    a_minute_later()
    wait_until(lambda: plan.runs.filter(outcome="started").count() == 2, 60, "the second run")
    second = plan.runs.filter(outcome="started").first()
    wait_until(lambda: ExportJob.objects.get(pk=second.job_id).is_finished, 60, "the second job")
    one, two = ExportJob.objects.get(pk=first.job_id), ExportJob.objects.get(pk=second.job_id)
    assert one.status == two.status == "complete"
    assert one.finished_at <= two.started_at  # never in parallel
    assert two.predecessor_id == one.pk
    assert not ExportPlan.objects.filter(pk=plan.pk, next_run_at__lte=timezone.now()).exists()


def test_the_cluster_runs_the_plans_tick_every_minute():
    """What the migration puts on the cluster's schedule (the test database is made by
    migrating, then emptied between tests: the migration is called again here)."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("plans.migrations.0002_plans_schedule")
    migration.add_schedule(apps, None)
    tick = Schedule.objects.get(name="adu-plans")
    assert (tick.func, tick.schedule_type, tick.minutes, tick.repeats) == (
        "plans.tasks.run_due",
        Schedule.MINUTES,
        1,
        -1,
    )
