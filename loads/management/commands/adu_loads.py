"""List loads, or cancel one."""

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from loads.models import Load, counts_of


class Command(AduCommand):
    help = "Lists your loads (staff: everyone's), newest first; --cancel ID cancels one."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=Load.Status.values, help="Only this status.")
        parser.add_argument("--limit", type=int, default=50, help="At most this many (50).")
        parser.add_argument("--cancel", type=int, metavar="ID", help="Cancel this load.")
        parser.add_argument("--log", type=int, metavar="ID", help="Print this load's log.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        user = self.user(options)
        if options["log"] is not None:
            from exports.joblog import log_path

            try:
                load = Load.objects.for_user(user, options["log"])
            except LookupError as error:
                raise CommandError(str(error)) from None
            path = log_path(load)
            self.stdout.write(
                path.read_text() if path.is_file() else f"Load {load.pk} has no log yet."
            )
            return
        if options["cancel"] is not None:
            from loads.tasks import cancel_load

            try:
                load = Load.objects.for_user(user, options["cancel"], act=True)
            except LookupError as error:
                raise CommandError(str(error)) from None
            if load.status in Load.FINISHED:
                raise CommandError(f"Load {load.pk} has already ended ({load.status}).")
            load = cancel_load(load, by=user)
            self.emit(
                options,
                {"load_id": load.pk, "status": load.status},
                f"Load {load.pk}: cancel requested ({load.status}).",
            )
            return
        loads = Load.objects.visible_to(user).select_related("target")
        if options["status"]:
            loads = loads.filter(status=options["status"])
        loads = list(loads[: options["limit"]])
        counts = counts_of(loads)
        rows = []
        for load in loads:
            rows.append(
                {
                    "load_id": load.pk,
                    "status": load.status,
                    "target": load.target.name,
                    "source_job_id": load.source_job_id,
                    **counts[load.pk],
                    "created_at": load.created_at.isoformat(),
                    "folder": load.folder,
                }
            )
        lines = [f"{'LOAD':>6} {'STATUS':22} {'TARGET':24} {'TABLES':>9} {'ROWS':>12} FOLDER"]
        lines += [
            f"{r['load_id']:>6} {r['status']:22} {r['target'][:24]:24} "
            f"{str(r['tables_done']) + '/' + str(r['tables_total']):>9} {r['rows']:>12,} "
            f"{r['folder']}"
            for r in rows
        ]
        self.emit(options, rows, "\n".join(lines) if rows else "No loads.")
