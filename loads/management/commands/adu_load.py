"""Load an export into a target database on the far side of the gap, table by table, each
proven equal to its file by a content fingerprint."""

import sys

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from connections.models import Connection
from exports.selection import BadRequest
from loads.creation import create_load, parse_schema_map
from loads.models import Load


class Command(AduCommand):
    help = (
        "Loads an export folder (one adu_verify accepts) into a connection marked as a load "
        "target: schemas, user types and tables from the manifest with their source types, "
        "the rows by COPY, then keys, checks, identities and sequences. Each table loads in a transaction "
        "of its own and commits only when a fingerprint of its rows in the target equals "
        "the file's. --sync runs the load here; without it the load is queued on the task "
        "cluster (--wait follows it). Exit status with --sync or --wait: 0 every table "
        "loaded, 1 some failed, 2 none or cancelled."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", help="The export folder (the one holding manifest.json).")
        parser.add_argument("target", help="The name of a connection marked as a load target.")
        parser.add_argument(
            "--schema-map", action="append", default=[], metavar="SRC=DST",
            help="Load the tables of schema SRC into schema DST (repeat).",
        )  # fmt: skip
        parser.add_argument("--tables", default="", help="SCHEMA.TABLE,... (default: all).")
        parser.add_argument(
            "--if-exists", choices=Load.IfExists.values, default=Load.IfExists.FAIL,
            help="A table already in the target: fail (default), replace it, or append to it.",
        )  # fmt: skip
        parser.add_argument("--parallel", type=int, default=2, help="Tables at once (default 2).")
        parser.add_argument(
            "--create-only", action="store_true", help="Create the tables and their keys, empty."
        )
        parser.add_argument("--sync", action="store_true", help="Run in this process.")
        parser.add_argument(
            "--wait", action="store_true", help="Queue the load, then follow it to the end."
        )
        super().add_arguments(parser)

    def handle(self, *args, **options):
        if options["wait"] and options["sync"]:
            raise CommandError("--wait follows a queued load; --sync runs it here: choose one.")
        user = self.user(options)
        target = Connection.objects.usable_by(user).named(user, options["target"])
        try:
            load = create_load(
                user,
                options["folder"],
                target,
                tables=[t for t in options["tables"].split(",") if t.strip()],
                schema_map=parse_schema_map(options["schema_map"]),
                if_exists=options["if_exists"],
                parallel=options["parallel"],
                create_only=options["create_only"],
            )
        except BadRequest as error:
            raise CommandError(str(error)) from None
        from loads import tasks

        if not options["sync"] and not options["wait"]:
            tasks.start_load(load)
            self.emit(
                options,
                {"load_id": load.pk, "status": load.status},
                f"Queued load {load.pk}: {load.tables.count()} table(s) into '{target.name}'.",
            )
            return
        if not options["json"]:
            self.stdout.write(
                f"Load {load.pk}: {load.tables.count()} table(s) from {load.folder} "
                f"into '{target.name}'"
            )
        if options["sync"]:
            from loads.engine import run_load  # pyarrow: only when it runs here

            load = run_load(load.pk)
        else:
            tasks.start_load(load)
            load = tasks.wait_for(load.pk)
        self.emit(options, lambda: load_data(load), lambda: load_text(load, self.style))
        sys.exit(exit_code(load))


def load_data(load: Load) -> dict:
    return {
        "load_id": load.pk,
        "status": load.status,
        "folder": load.folder,
        "target": load.target.name,
        "manifest_sha256": load.manifest_sha256,
        "source_job_id": load.source_job_id,
        "error": load.error,
        "tables": [
            {
                "schema": t.schema,
                "table": t.table,
                "target": f"{t.target_schema}.{t.table}",
                "status": t.status,
                "rows": t.rows,
                "file_fingerprint": t.file_fingerprint,
                "target_fingerprint": t.target_fingerprint,
                "source_fingerprint": t.source_fingerprint,
                "error": t.error,
                "notes": t.notes,
            }
            for t in load.tables.all()
        ],
    }


def load_text(load: Load, style) -> str:
    lines = []
    for t in load.tables.all():
        detail = t.error or (
            f"{t.rows:,} rows, fingerprint {t.target_fingerprint.get('digest', '-')}"
        )
        line = f"{t.target_schema + '.' + t.table:40} {t.status:10} {detail}"
        lines.append(style.ERROR(line) if t.error else style.SUCCESS(line))
        lines += [f"{'':40} left out: {note}" for note in t.notes]
    if load.error:
        lines.append(style.ERROR(load.error))
    lines.append(f"Load {load.pk}: {load.get_status_display()}.")
    return "\n".join(lines)


def exit_code(load: Load) -> int:
    if load.status in (Load.Status.VERIFIED, Load.Status.COMPLETE):
        return 0
    return 1 if load.status == Load.Status.COMPLETE_WITH_ERRORS else 2
