"""Delete finished jobs older than a given age, with their files."""

import re
from datetime import timedelta

from django.core.management.base import CommandError
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import roles
from adu_site.commands import AduCommand, human_bytes
from audit.models import AuditEvent, record
from exports.models import ExportJob

_AGE = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = _AGE.match(text.strip())
    if not match:
        raise CommandError(f"'{text}' is not an age: write it as 30d, 12h or 2w.")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class Command(AduCommand):
    help = (
        "Deletes finished jobs (complete, with errors, failed or cancelled) older than "
        "--older-than, with their export folders and logs; never a queued or running job. "
        "Each deletion is on the audit trail. Only an ADU Admin may run it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="AGE", help="30d, 12h, 2w.")
        parser.add_argument("--dry-run", action="store_true", help="Only say what would go.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        user = self.user(options)
        if not roles.is_admin(user):
            raise CommandError(f"{user.username} is not an ADU Admin: only an admin cleans up.")
        before = timezone.now() - parse_age(options["older_than"])
        jobs = list(
            ExportJob.objects.filter(status__in=ExportJob.FINISHED)
            .annotate(ended=Coalesce("finished_at", "created_at"))
            .filter(Q(ended__lt=before))
            .select_related("connection")
            .order_by("pk")
        )
        done = []
        for job in jobs:
            size = job.disk_bytes() if options["dry_run"] else job.delete_with_files(by=user)
            done.append({"job_id": job.pk, "connection": job.connection.name, "bytes": size})
        freed = sum(d["bytes"] for d in done)
        if not options["dry_run"]:
            record(
                AuditEvent.Action.CLEANUP,
                user=user,
                older_than=options["older_than"],
                jobs=len(done),
                bytes_freed=freed,
            )
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.emit(
            options,
            {"dry_run": options["dry_run"], "jobs": done, "bytes_freed": freed},
            lambda: "\n".join(
                [
                    f"  job {d['job_id']} ({d['connection']}): {human_bytes(d['bytes'])}"
                    for d in done
                ]
                + [f"{verb} {len(done)} job(s), {human_bytes(freed)}."]
            ),
        )
