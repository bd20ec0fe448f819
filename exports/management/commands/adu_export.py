"""Export tables of a connection to ZSTD Parquet files with a manifest."""

import sys

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from connections.models import Connection
from exports import options as export_options
from exports import selection
from exports.job_display import Progress, exit_code, job_data, job_text, wait_for
from exports.jobs import BadRequest, create_job
from exports.tasks import start_job


class Command(AduCommand):
    help = (
        "Exports tables of a connection to ZSTD Parquet files under the export root, all read "
        "from one snapshot, with manifest.json written last. With no table option it exports "
        "every table of the chosen schemas (all non-system schemas by default). --sync runs "
        "the job in this process; without it the job is queued on the task cluster (--wait "
        "follows it). Exit status with --sync or --wait: 0 complete, 1 complete with "
        "errors, 2 failed or cancelled."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The connection's name.")
        parser.add_argument("--schema", action="append", default=[], help="A schema (repeat).")
        parser.add_argument("--tables", default="", help="SCHEMA.TABLE,SCHEMA.TABLE,...")
        parser.add_argument("--exclude", action="append", default=[], help="SCHEMA.TABLE.")
        parser.add_argument("--out", default="", help="Folder name under the export root.")
        for name in export_options.OPTIONS:
            choices = export_options.choices(name)
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                type=None if choices else int,
                choices=choices or None,
                help=export_options.help_text(name),
            )
        parser.add_argument(
            "--columns",
            action="append",
            default=[],
            metavar="S.T:A,B",
            help="Export only these columns of a table (repeat per table).",
        )
        parser.add_argument(
            "--exclude-columns",
            action="append",
            default=[],
            metavar="S.T:C",
            help="Leave these columns of a table out.",
        )
        parser.add_argument(
            "--where",
            action="append",
            default=[],
            metavar="S.T:CONDITION",
            help="Export only the rows of a table that meet this SQL condition.",
        )
        parser.add_argument(
            "--mask",
            action="append",
            default=[],
            metavar="S.T:COLUMN=METHOD",
            help="Mask a column: null, hash, redact, truncate (truncate:-2 for hundreds).",
        )
        parser.add_argument(
            "--query",
            action="append",
            default=[],
            metavar="NAME",
            help="Also export this saved query of the connection.",
        )
        parser.add_argument(
            "--allow-sensitive", action="append", default=[], metavar="S.T.C",
            help="ADU Admins only: let this sensitive column leave unmasked ('*': all).",
        )  # fmt: skip
        parser.add_argument("--sync", action="store_true", help="Run in this process.")
        parser.add_argument(
            "--wait", action="store_true", help="Queue the job, then follow it to the end."
        )
        super().add_arguments(parser)

    def handle(self, *args, **options):
        if options["wait"] and options["sync"]:
            raise CommandError("--wait follows a queued job; --sync runs it here: choose one.")
        user = self.user(options)
        connection = Connection.objects.usable_by(user).named(user, options["name"])
        queries = []
        for name in options["query"]:
            query = connection.queries.filter(name=name).first()
            if query is None:
                raise CommandError(f"Connection '{connection.name}' has no saved query '{name}'.")
            queries.append(query)
        try:
            requests = selection.parse_requests(
                options["columns"], options["exclude_columns"], options["where"], options["mask"]
            )
        except BadRequest as error:
            raise CommandError(str(error)) from None
        try:
            job = create_job(
                user,
                connection,
                schemas=options["schema"],
                tables=[t for t in options["tables"].split(",") if t.strip()],
                exclude=[t for name in options["exclude"] for t in name.split(",") if t.strip()],
                options={name: options[name] for name in export_options.OPTIONS},
                out=options["out"],
                selections=requests,
                queries=queries,
                allow_sensitive=options["allow_sensitive"],
            )
        except BadRequest as error:
            raise CommandError(str(error)) from None
        if not options["sync"] and not options["wait"]:
            start_job(job)
            self.emit(
                options,
                {"job_id": job.pk, "status": job.status, "output_dir": str(job.folder())},
                f"Queued job {job.pk}: {job.tables_total} table(s) from '{connection.name}'. "
                f"Follow it with: manage.py adu_job {job.pk}",
            )
            return
        if not options["json"]:
            self.stdout.write(
                f"Job {job.pk}: {job.tables_total} table(s) from '{connection.name}' "
                f"into {job.folder()}"
            )
        if options["sync"]:
            progress = Progress(self.stdout, job.pk) if not options["json"] else None
            if progress:
                progress.start()
            try:
                from exports.engine.run import run_job  # the engine: only when it runs here

                job = run_job(job.pk)
            finally:
                if progress:
                    progress.stop()
        else:
            start_job(job)
            job = wait_for(job.pk, None if options["json"] else self.stdout)
        self.emit(options, lambda: job_data(job), lambda: job_text(job, self.style))
        sys.exit(exit_code(job))
