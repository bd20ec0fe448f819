"""What to export, as adu_export and adu_plan take it on the command line."""

from exports import options as export_options
from exports import selection


def add_selection_arguments(parser):
    parser.add_argument("--schema", action="append", default=[], help="A schema (repeat).")
    parser.add_argument("--tables", default="", help="SCHEMA.TABLE,SCHEMA.TABLE,...")
    parser.add_argument("--exclude", action="append", default=[], help="SCHEMA.TABLE.")
    for name in export_options.OPTIONS:
        choices = export_options.choices(name)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=None if choices else int,
            choices=choices or None,
            help=export_options.help_text(name),
        )
    parser.add_argument(
        "--columns", action="append", default=[], metavar="S.T:A,B",
        help="Export only these columns of a table (repeat per table).",
    )  # fmt: skip
    parser.add_argument(
        "--exclude-columns", action="append", default=[], metavar="S.T:C",
        help="Leave these columns of a table out.",
    )  # fmt: skip
    parser.add_argument(
        "--where", action="append", default=[], metavar="S.T:CONDITION",
        help="Export only the rows of a table that meet this SQL condition.",
    )  # fmt: skip
    parser.add_argument(
        "--mask", action="append", default=[], metavar="S.T:COLUMN=METHOD",
        help="Mask a column: null, hash, redact, truncate (truncate:-2 for hundreds).",
    )  # fmt: skip
    parser.add_argument(
        "--query", action="append", default=[], metavar="NAME",
        help="Also export this saved query of the connection.",
    )  # fmt: skip
    parser.add_argument(
        "--allow-sensitive", action="append", default=[], metavar="S.T.C",
        help="ADU Admins only: let this sensitive column leave unmasked ('*': all).",
    )  # fmt: skip


def definition(options: dict) -> dict:
    """The export's definition (exports.jobs.job_arguments) from the parsed options;
    BadRequest for a malformed one."""
    requests = selection.parse_requests(
        options["columns"], options["exclude_columns"], options["where"], options["mask"]
    )
    return {
        "schemas": options["schema"],
        "tables": [t.strip() for t in options["tables"].split(",") if t.strip()],
        "exclude": [t.strip() for name in options["exclude"] for t in name.split(",") if t.strip()],
        "options": {
            name: options[name] for name in export_options.OPTIONS if options[name] is not None
        },
        "selections": {f"{schema}.{table}": r for (schema, table), r in requests.items()},
        "queries": options["query"],
        "allow_sensitive": options["allow_sensitive"],
    }
