"""Row filters, queries and views on a Vertica source: not available yet (PostgreSQL checks
them against its plans; Vertica's are not read yet), so each is refused in one sentence."""

from typing import NoReturn

from connections.drivers.base import BadSelection, SourceColumn


def check_filter(db, schema: str, table: str, expression: str) -> NoReturn:
    """Row filters are checked against PostgreSQL's plans; Vertica has no such check yet."""
    raise BadSelection(
        "row filters are not available for Vertica sources yet: export a view that "
        "filters the table."
    )


def check_query(db, query: str) -> NoReturn:
    raise BadSelection(
        "saved queries are not available for Vertica sources yet: export a view instead."
    )


def check_view(db, schema: str, view: str) -> NoReturn:
    check_query(db, "")


def views(db, names) -> dict:
    """Vertica's views are exported as tables are: without a check of what they read
    (its plans are not read yet); policies hold for a view's own column names."""
    return {}


def relatives(db, names) -> dict:
    return {}  # Vertica has no table inheritance or partitioned parents


def query_columns(db, query: str) -> list[SourceColumn]:
    check_query(db, query)


def fingerprint(db, schema: str, table: str, columns: list[dict], row_filter: str = ""):
    """None: Vertica's SQL has no fingerprint of the form a load computes yet."""
    return None


def preview(db, query: str, limit: int) -> list[tuple]:
    check_query(db, query)
