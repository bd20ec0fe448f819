"""Pack a finished export into volumes for the media that carry it across the gap."""

from pathlib import Path

from django.core.management.base import CommandError

from accounts import roles
from audit.models import AuditEvent, record
from exports.job_display import JobCommand
from exports.models import ExportJob
from transfer.bundle import BundleRefused, parse_size


class Command(JobCommand):
    help = (
        "Writes the export of a finished job into DIR as numbered volumes of at most "
        "--volume-size bytes (default 4G) and a signed index of their names, sizes and "
        "SHA-256; with --encrypt-to, the volumes are encrypted (age) to the far side's "
        "recipient, so nothing readable leaves on the media. The far side runs adu_receive."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--to", required=True, metavar="DIR", help="Where to write it.")
        parser.add_argument("--volume-size", default="4G", help="e.g. 4G, 700M (default 4G).")
        parser.add_argument(
            "--encrypt-to", metavar="RECIPIENT",
            help="The far side's age recipient (age1..., from its adu_keys recipient), or a file.",
        )  # fmt: skip

    def act(self, job: ExportJob, options):
        if not roles.is_operator(self.user(options)):
            raise CommandError("Your role cannot prepare transfers.")
        if not job.is_finished or not job.manifest_path().is_file():
            raise CommandError(f"Job {job.pk} has no finished export to bundle yet.")
        from exports.verify import BadManifest  # pyarrow: not for --help
        from transfer import keys
        from transfer.bundle import make_bundle

        try:
            size = parse_size(options["volume_size"])
            recipient = keys.recipient(options["encrypt_to"]) if options["encrypt_to"] else None
            index = make_bundle(job.folder(), Path(options["to"]), size, recipient)
        except (BundleRefused, keys.BadKey, BadManifest) as error:
            raise CommandError(str(error)) from None
        record(
            AuditEvent.Action.BUNDLE_CREATE,
            user=self.user(options),
            obj=job,
            bundle=index["bundle"],
            to=str(Path(options["to"]).resolve()),
            volumes=len(index["volumes"]),
            encrypted=bool(recipient),
        )
        self.emit(
            options,
            index,
            lambda: (
                f"{index['bundle']}: {len(index['volumes'])} volume(s), {index['bytes']} bytes"
                f"{', encrypted' if recipient else ''}, in {Path(options['to']).resolve()}; "
                f"index {index['bundle']}.index.json (signed)."
            ),
        )
