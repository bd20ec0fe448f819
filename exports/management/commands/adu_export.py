"""Export tables of a connection to ZSTD Parquet files with a manifest."""

import sys

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from connections.models import Connection
from exports import cli
from exports.job_display import Progress, exit_code, job_data, job_text, wait_for
from exports.jobs import BadRequest, create_job, job_arguments
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
        parser.add_argument("--out", default="", help="Folder name under the export root.")
        cli.add_selection_arguments(parser)
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
        try:
            arguments = job_arguments(connection, cli.definition(options))
            job = create_job(user, connection, out=options["out"], **arguments)
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
