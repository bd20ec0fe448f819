"""Warnings when a table looks very different from its last successful export.

Compared with the last complete export of the same table from the same connection: the
row count (a large drop or growth) and each column's fraction of nulls (a large rise).
Thresholds come from settings.
"""

from django.conf import settings
from django.db.models import OuterRef, Subquery

from exports.models import TableRun


def last_complete_runs(job, runs: list[int]) -> dict[tuple[str, str], TableRun]:
    """For each of the job's `runs` (ids), the last complete export of the same table from
    the same connection in another job, if any: in two queries for them all."""
    last = (
        TableRun.objects.filter(
            job__connection_id=job.connection_id,
            schema=OuterRef("schema"),
            table=OuterRef("table"),
            status=TableRun.Status.COMPLETE,
        )
        .exclude(job_id=job.pk)
        .order_by("-finished_at")
        .values("pk")[:1]
    )
    found = TableRun.objects.filter(pk__in=runs).annotate(last=Subquery(last))
    ids = [pk for pk in found.values_list("last", flat=True) if pk is not None]
    earlier = TableRun.objects.filter(pk__in=ids).only(
        "job_id", "schema", "table", "rows_written", "profile"
    )
    return {(r.schema, r.table): r for r in earlier}


def anomalies(run: TableRun, previous: TableRun | None) -> list[dict]:
    """What changed much since `previous`, the table's last complete export."""
    if previous is None or not previous.rows_written:
        return []
    since = f"since job {previous.job_id}"
    found = []
    before, now = previous.rows_written, run.rows_written
    change = (now - before) / before
    if change <= -settings.ANOMALY_ROWS_DROP:
        found.append(
            _warning("rows", f"Rows fell from {before:,} to {now:,} ({change:+.0%}) {since}.")
        )
    elif change >= settings.ANOMALY_ROWS_GROWTH:
        found.append(
            _warning("rows", f"Rows grew from {before:,} to {now:,} ({change:+.0%}) {since}.")
        )
    earlier = {c["name"]: c["nulls"] for c in previous.profile}
    for column in run.profile:
        if column["name"] not in earlier or not now:
            continue
        was = 100 * earlier[column["name"]] / before
        is_ = 100 * column["nulls"] / now
        if is_ - was >= settings.ANOMALY_NULL_POINTS:
            found.append(
                _warning(
                    "nulls",
                    f"Nulls in column {column['name']} rose from {was:.0f}% to {is_:.0f}% {since}.",
                )
            )
    return found


def _warning(check: str, message: str) -> dict:
    return {"check": check, "message": message}
