"""Receive bundles on the far side of the gap: check, unpack once, verify."""

import sys
from pathlib import Path

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from transfer.bundle import BundleRefused


class Command(AduCommand):
    help = (
        "Receives each bundle whose index is in DIR: checks the index's signature against "
        "the trusted keys (--trust KEYFILE, repeatable, or ADU_TRUSTED_KEYS), every volume's "
        "size and SHA-256 (naming the missing or damaged ones), decrypts with this "
        "instance's age identity, unpacks under ADU_RECEIVE_ROOT, checks the export's "
        "signature and files as adu_verify does, and records the receipt. A bundle received "
        "before is reported, not unpacked again. Exit 1 when a bundle is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("dir", help="The folder holding the bundle's index and volumes.")
        parser.add_argument(
            "--trust", action="append", default=[], metavar="KEYFILE",
            help="A public key (PEM) whose signature is accepted (repeat).",
        )  # fmt: skip
        super().add_arguments(parser)

    def handle(self, *args, **options):
        from transfer import keys  # cryptography and pyarrow: not for --help
        from transfer.receive import indexes, receive

        user = self.user(options)
        try:
            trusted = keys.trusted_keys(options["trust"] or None)
            found = indexes(Path(options["dir"]))
        except (keys.BadKey, BundleRefused) as error:
            raise CommandError(str(error)) from None
        results, refused = [], 0
        for index in found:
            try:
                received = receive(index, trusted, user)
            except BundleRefused as error:
                refused += 1
                results.append({"index": index.name, "status": "refused", "error": str(error)})
                if not options["json"]:
                    self.stderr.write(self.style.ERROR(f"{index.name}: {error}"))
                continue
            r = received.receipt
            results.append(
                {
                    "index": index.name,
                    "status": "received" if received.new else "already received",
                    "bundle": r.bundle,
                    "folder": r.folder,
                    "received_at": r.received_at.isoformat(),
                    "signed_by": r.signed_by,
                }
            )
            if not options["json"]:
                self.stdout.write(self.style.SUCCESS(str(received)))
        if options["json"]:
            self.emit(options, results, "")
        sys.exit(1 if refused else 0)
