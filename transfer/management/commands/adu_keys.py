"""This instance's keys for carrying exports across the gap: print, rotate."""

import sys

from django.core.management.base import CommandError

from adu_site.commands import AduCommand
from audit.models import AuditEvent, record
from transfer import keys


class Command(AduCommand):
    help = (
        "public: print this instance's public signing key (PEM, to hand to the far side, "
        "which trusts it with adu_verify --trust or ADU_TRUSTED_KEYS) on standard output, "
        "and its fingerprint on standard error; --all adds the keys rotated out, which still "
        "verify the manifests they signed. rotate: make a new signing key; the old one is "
        "kept among the rotated out. recipient: print this instance's age recipient (age1...), "
        "to hand to the exporting side for adu_bundle --encrypt-to."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["public", "rotate", "recipient"])
        parser.add_argument("--all", action="store_true", help="public: also the keys rotated out.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        user = self.user(options)
        try:
            if options["action"] == "rotate":
                old, new = keys.rotate()
                record(AuditEvent.Action.KEY_ROTATION, user=user, key="signing", old=old, new=new)
                self.emit(
                    options,
                    {"old": old, "new": new},
                    f"New signing key {new}; the old one, {old}, is kept among the rotated "
                    "out. Hand the new public key (adu_keys public) to the far side.",
                )
            elif options["action"] == "recipient":
                recipient = str(keys.identity().to_public())
                record(AuditEvent.Action.KEY_PRINT, user=user, key="age recipient")
                self.emit(options, {"recipient": recipient}, recipient)
            else:
                self._public(options, user)
        except keys.BadKey as error:
            raise CommandError(str(error)) from None

    def _public(self, options, user):
        found = [keys.signing_key()] + (keys.retired_keys() if options["all"] else [])
        printed = [
            {"fingerprint": keys.fingerprint(k), "pem": keys.public_pem(k), "current": i == 0}
            for i, k in enumerate(found)
        ]
        record(
            AuditEvent.Action.KEY_PRINT,
            user=user,
            key="signing",
            fingerprints=[p["fingerprint"] for p in printed],
        )
        if options["json"]:
            return self.emit(options, printed, "")
        for key in printed:
            label = "current" if key["current"] else "rotated out"
            sys.stderr.write(f"Fingerprint ({label}): {key['fingerprint']}\n")
            self.stdout.write(key["pem"], ending="")
