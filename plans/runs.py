"""Running plans: by hand, or when due (the cluster's "adu-plans" schedule calls run_due
every minute). A plan never overlaps itself: a run due while its last job is still at work
is skipped and recorded. Runs missed while the cluster was down are made up once.
"""

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, record
from connections.models import ConnectionFailed
from exports.jobs import BadRequest, create_job, job_arguments
from exports.models import ExportJob, TableRun
from plans.models import ExportPlan, PlanRun


def run_due(now=None, start=None) -> list[PlanRun]:
    """Run every plan that is due; each is claimed first, so that two calls at the same
    moment (two clusters) run it once. `start`: as run_plan's."""
    now = now or timezone.now()
    done = []
    for plan in ExportPlan.objects.filter(paused=False, next_run_at__lte=now).select_related(
        "connection", "owner"
    ):
        claimed = ExportPlan.objects.filter(pk=plan.pk, next_run_at=plan.next_run_at).update(
            next_run_at=plan.next_after(now)
        )
        if claimed:
            done.append(run_plan(plan, trigger="schedule", start=start))
    return done


def run_plan(plan: ExportPlan, trigger: str = "manual", by=None, start=None) -> PlanRun:
    """Start a job of the plan unless its last one is still at work; the run's record.
    `start(job)` starts it (default: on the cluster, exports.tasks.start_job)."""
    from exports.tasks import start_job

    with transaction.atomic():
        plan = (
            ExportPlan.objects.select_for_update()
            .select_related("connection", "owner")
            .get(pk=plan.pk)
        )
        last = plan.runs.filter(job__isnull=False).select_related("job").first()
        if last and not last.job.is_finished:
            run = PlanRun.objects.create(
                plan=plan,
                trigger=trigger,
                outcome=PlanRun.Outcome.SKIPPED,
                note=f"Job {last.job.pk} of the last run is still {last.job.get_status_display().lower()}.",
            )
            record(AuditEvent.Action.PLAN_RUN, user=by, obj=plan, outcome="skipped", note=run.note)
            return run
        number = plan.runs.filter(outcome=PlanRun.Outcome.STARTED).count() + 1
        try:
            job = create_job(plan.owner, plan.connection, **_job_arguments(plan, number))
        except (BadRequest, ConnectionFailed) as error:
            run = PlanRun.objects.create(
                plan=plan, trigger=trigger, outcome=PlanRun.Outcome.REFUSED, note=str(error)
            )
            record(AuditEvent.Action.PLAN_RUN, user=by, obj=plan, outcome="refused", note=run.note)
            from plans import notify

            notify.plan_refused(plan, run)
            return run
        _chain(plan, job)
        run = PlanRun.objects.create(
            plan=plan, job=job, trigger=trigger, outcome=PlanRun.Outcome.STARTED
        )
        record(AuditEvent.Action.PLAN_RUN, user=by, obj=plan, outcome="started", job=job.pk)
    (start or start_job)(job)
    return run


def _job_arguments(plan: ExportPlan, number: int) -> dict:
    out = plan.folder_name(timezone.now(), number)
    taken = set(
        ExportJob.objects.filter(output_dir__startswith=out).values_list("output_dir", flat=True)
    )
    out = next(name for name in [out, *(f"{out}-{n}" for n in range(2, 1000))] if name not in taken)
    return {**job_arguments(plan.connection, plan.definition), "out": out}


def _chain(plan: ExportPlan, job: ExportJob):
    """Link the job to the plan's last export and give each incremental table the window's
    start: where that table's last complete export of this plan ended."""
    previous = (
        ExportJob.objects.filter(plan_runs__plan=plan, manifest_sha256__gt="")
        .exclude(pk=job.pk)
        .order_by("-pk")
        .first()
    )
    if previous is not None:
        ExportJob.objects.filter(pk=job.pk).update(predecessor=previous)
    runs = [
        r
        for r in job.tables.all()
        if plan.is_incremental(r.schema, r.table) and not r.spec.get("query")
    ]
    kinds = _kinds(plan, {r.schema for r in runs})
    for run in runs:
        name = f"{run.schema}.{run.table}"
        kind = kinds.get((run.schema, run.table), "table")
        if kind not in ROWS_WITH_XMIN and name not in plan.watermarks:
            if name not in plan.incremental:
                continue  # by '*': a view has no rows of its own, it goes whole each time
            run.spec = {**(run.spec or {}), "incremental": {"after": None, "refused": kind}}
            run.save(update_fields=["spec"])
            continue
        last = (
            TableRun.objects.filter(
                job__plan_runs__plan=plan,
                schema=run.schema,
                table=run.table,
                status=TableRun.Status.COMPLETE,
                spec__has_key="window",
            )
            .exclude(job=job)
            .order_by("-job_id")
            .first()
        )
        watermark = plan.watermarks.get(f"{run.schema}.{run.table}")
        by = "watermark" if watermark else "xmin"
        if last is not None and last.spec["window"].get("by", "xmin") != by:
            last = None  # the window's kind changed: a new chain
        if last is None:
            asked = {"after": None, "reason": f"the first export of this table by plan {plan.name}"}
        else:
            asked = {"after": last.spec["window"]["before"], "job": last.job_id}
        if watermark:
            asked["watermark"] = watermark
        run.spec = {**(run.spec or {}), "incremental": asked}
        run.save(update_fields=["spec"])


# Relations whose rows carry the transaction that wrote them.
ROWS_WITH_XMIN = ("table", "partitioned table", "materialized view")


def _kinds(plan: ExportPlan, schemas: set[str]) -> dict[tuple[str, str], str]:
    """What each relation of these schemas is (a table, a view...), as discovery says; a
    source that does not answer now is asked again by the job, whose tables then fail
    with its sentence."""
    found = {}
    for schema in schemas:
        try:
            tables = plan.connection.driver().tables(plan.connection, schema, sizes=False)
        except ConnectionFailed:
            return found
        found.update({(info.schema, info.name): info.kind for info in tables})
    return found
