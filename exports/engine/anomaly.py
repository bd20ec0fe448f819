"""Warnings when a table looks very different from its last successful export.

Compared with the last complete export of the same table from the same connection: the
row count (a large drop or growth) and each column's fraction of nulls (a large rise).
Thresholds come from settings.
"""

from django.conf import settings

from exports.models import TableRun


def anomalies(run: TableRun) -> list[dict]:
    previous = (
        TableRun.objects.filter(
            job__connection_id=run.job.connection_id,
            schema=run.schema,
            table=run.table,
            status=TableRun.Status.COMPLETE,
        )
        .exclude(job_id=run.job_id)
        .order_by("-finished_at")
        .only("job_id", "rows_written", "profile")
        .first()
    )
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
