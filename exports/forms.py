"""The new-export form of the portal: its options, what the page sent about tables and
saved queries, and the table and column pickers, as first shown or as sent back."""

from dataclasses import dataclass

from django import forms

from connections.drivers import SourceColumn, TableInfo
from connections.models import Connection, ConnectionFailed, SensitiveColumn
from exports import options as export_options
from exports import selection
from exports.engine import column_kinds, masking
from exports.jobs import BadRequest

# The modes of exports.options.VALIDATION_MODES as the page offers them, the default first.
VALIDATION_LABELS = {
    "sample": "Sample: the source's constraints on a sample of each table",
    "full": "Full: the source's constraints on every row",
    "off": "Off: rules only",
}


def _option_field(name: str) -> forms.IntegerField:
    """A whole-number option of the job, with the limits and default of exports.options."""
    low, high = export_options.limits(name)
    return forms.IntegerField(
        label=export_options.OPTIONS[name].title,
        min_value=low,
        max_value=high,
        initial=export_options.default(name),
    )


class NewExportForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.none(), empty_label=None)
    out = forms.CharField(
        label="Output folder",
        required=False,
        help_text="A new folder under the export root; empty: job-<id> (a name of that form "
        "is kept for jobs without one).",
    )
    parallel = _option_field("parallel")
    compression_level = _option_field("compression_level")
    batch_rows = _option_field("batch_rows")
    validation = forms.ChoiceField(
        label="Validation",
        choices=list(VALIDATION_LABELS.items()),
        initial=export_options.default("validation"),
        required=False,
        help_text="Your rules always check every row.",
    )

    def clean_validation(self):
        return self.cleaned_data["validation"] or export_options.default("validation")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["connection"].queryset = Connection.objects.usable_by(user)


class SubmittedSelection:
    """The tables, saved queries and "Columns and rows…" parts the page sent, as typed, so
    that a refused export shows them again exactly; `requests()` is what the export gets."""

    def __init__(self, post):
        self.tables: list[str] = post.getlist("tables")
        self.queries: list[str] = [q for q in post.getlist("queries") if q.isdigit()]
        self.schema: str = post.get("schema", "")
        # A part is sent only once opened; a table whose part stayed closed goes whole.
        self.panels: dict[str, dict] = {}
        for name in post.getlist("detail"):
            prefix = f"mask:{name}:"
            masks = {key[len(prefix) :]: post.get(key) for key in post if key.startswith(prefix)}
            self.panels[name] = {
                "columns": post.getlist(f"col:{name}"),
                "masks": masks,
                "precisions": {
                    column: post.get(f"precision:{name}:{column}", "") for column in masks
                },
                "filter": post.get(f"where:{name}", ""),
            }

    def requests(self) -> dict:
        """Columns, masks and a row filter per ticked table whose part was opened."""
        requests = {}
        for name, panel in self.panels.items():
            if name not in self.tables:
                continue
            if not panel["columns"]:
                raise BadRequest(f"{name}: no column is checked; check at least one.")
            masks = {}
            for column, method in panel["masks"].items():
                if not method:
                    continue
                mask = {"method": method}
                precision = panel["precisions"][column].strip()
                if method == "truncate" and precision:
                    # Not a number: the export's own check says what a precision must be.
                    mask["precision"] = (
                        int(precision) if precision.lstrip("-").isdigit() else precision
                    )
                masks[column] = mask
            schema, _, table = name.partition(".")
            requests[(schema, table)] = {
                "columns": panel["columns"],
                "masks": masks,
                "filter": panel["filter"],
            }
        return requests


@dataclass
class TableChoice:
    """A row of the table picker."""

    table: TableInfo
    ticked: bool = False
    panel: dict | None = None  # its "Columns and rows…" part, when that was open
    refusal: str = ""  # why the export was refused, when it is about this table

    @property
    def name(self) -> str:
        return f"{self.table.schema}.{self.table.name}"


@dataclass
class ColumnChoice:
    """A row of a table's "Columns and rows…" part."""

    column: SourceColumn
    policy: SensitiveColumn | None
    exported: bool
    mask: str
    precision: str = ""
    truncatable: bool = False  # a number, date or timestamp, as the export reads it
    dated: bool = False  # truncated to the month, whatever the precision

    @property
    def offers_precision(self) -> bool:
        return self.truncatable and not self.dated


def table_picker(connection, user, schema: str = "", chosen=None) -> dict:
    """The context of connections/_tables.html: the tables of one schema (or all) with
    the saved queries; with `chosen` (a SubmittedSelection), ticked and filled in as sent."""
    try:
        every_table = connection.discover(user)
        error = None
    except ConnectionFailed as failure:
        every_table, error = [], str(failure)
    picked = set(chosen.tables) | set(chosen.panels) if chosen else set()
    if chosen:
        schema = chosen.schema
        if any(not name.startswith(f"{schema}.") for name in picked):
            schema = ""  # a choice outside the schema shown must still be seen
    rows = []
    for table in every_table:
        if schema and table.schema != schema:
            continue
        row = TableChoice(table)
        if chosen:
            row.ticked = row.name in chosen.tables
            if row.name in chosen.panels:
                row.panel = column_panel(
                    connection, table.schema, table.name, chosen.panels[row.name]
                )
        rows.append(row)
    chosen_queries = set(chosen.queries) if chosen else set()
    return {
        "connection": connection,
        "tables": rows,
        "ticked": sum(row.ticked for row in rows),
        "schemas": sorted({t.schema for t in every_table}),
        "schema": schema,
        "error": error,
        "queries": [(q, str(q.pk) in chosen_queries) for q in connection.queries.all()],
        "queries_refusal": "",
    }


def column_panel(connection, schema: str, table: str, sent: dict | None = None) -> dict:
    """The context of connections/_columns.html: the table's columns with their types and
    policies, for choosing columns, masks and a row filter; with `sent`, as it was sent."""
    try:
        columns = connection.describe_table(schema, table)
        error = None
    except ConnectionFailed as failure:
        columns, error = [], str(failure)
    policies = list(connection.sensitive_columns.all())
    driver = connection.driver() if columns else None
    rows = []
    for column in columns:
        policy = next((p for p in policies if p.matches(schema, table, column.name)), None)
        default_mask = policy.action if policy and policy.action in masking.METHODS else ""
        arrow_type = driver.plan(column).arrow_type
        row = ColumnChoice(
            column,
            policy,
            exported=not policy or policy.action != SensitiveColumn.Action.EXCLUDE,
            mask=default_mask,
            truncatable=not masking.problem({"method": "truncate"}, arrow_type),
            dated=column_kinds.is_date_or_timestamp(arrow_type),
        )
        if sent is not None:
            row.exported = column.name in sent["columns"]
            row.mask = sent["masks"].get(column.name, "")
            row.precision = sent["precisions"].get(column.name, "")
        rows.append(row)
    return {
        "name": f"{schema}.{table}",
        "columns": rows,
        "methods": masking.METHODS,
        "error": error,
        "filter": sent["filter"] if sent else "",
        "filter_check": "",  # the check's answer shown under the filter, when there is one
        "refusal": "",
    }


def filter_refusal(user, connection, schema: str, table: str, row_filter: str) -> str:
    """Why an export of the table with this row filter would be refused ('' if it would
    not): the very check, and sentence, of the export (exports.selection)."""
    try:
        selection.resolve(
            user, connection, [(schema, table)], {(schema, table): {"filter": row_filter}}
        )
    except BadRequest as refusal:
        return str(refusal)
    return ""
