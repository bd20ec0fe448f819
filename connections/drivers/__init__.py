"""Drivers: one package per database kind behind one small interface.

The interface, and the records and errors drivers share, are in connections.drivers.base
(`Driver`, a typing.Protocol a driver module satisfies). This module picks the driver of a
connection kind and holds what the engine does alike for every driver: how a job's tables
were read (consistency) and stopping a session's work (interrupt). Its re-exports of the
base names keep `from connections.drivers import SourceColumn` working everywhere.
"""

from connections.drivers.base import (  # noqa: F401  (re-exported: the drivers' shared names)
    NATIVE,
    BadSelection,
    ColumnPlan,
    DoesNotFit,
    Driver,
    LinkReport,
    SourceColumn,
    TableInfo,
)


def for_kind(kind: str) -> Driver:
    if kind in ("postgresql", "greenplum"):
        from connections.drivers import postgresql

        return postgresql
    if kind == "vertica":
        from connections.drivers import vertica

        return vertica
    raise NotImplementedError(f"There is no driver for '{kind}' connections yet.")


# A snapshot id of this form means the source could not export a snapshot (Greenplum
# without pg_export_snapshot()): each table was read in its own transaction.
PER_TABLE = "per-table:"
PER_TABLE_REASON = (
    "the server cannot export a snapshot (pg_export_snapshot() is unavailable), so each "
    "table was read in its own transaction: the tables were not read at one instant"
)


def consistency(snapshot_id: str | None) -> dict:
    """How the tables of a job were read, for the manifest."""
    if (snapshot_id or "").startswith(PER_TABLE):
        return {"consistency": "per table", "consistency_reason": PER_TABLE_REASON}
    return {"consistency": "snapshot"}


def interrupt(sessions):
    """Cancel whatever the sessions run now (a COPY, a count); each ends with an error."""
    for session in list(sessions):
        try:
            session.cancel()
        except Exception:
            pass  # closed meanwhile, or nothing to cancel
