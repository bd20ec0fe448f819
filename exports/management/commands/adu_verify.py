"""Verify an export folder on the receiving side: files, hashes, row counts, schemas."""

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Checks an export folder against its manifest.json: every file is present, has the "
        "recorded size and SHA-256, its Parquet footer has the recorded rows and schema, "
        "and each table's rows add up to the source's count, and no other file is in the "
        "folder. Needs no database. Exit 0 only when every table is ok and no file is "
        "unlisted. With --against, checks a database the export was loaded into instead: "
        "each table's content fingerprint in it equals its files' (and the source's, where "
        "the export took one); the target is only read. With --trust (or ADU_TRUSTED_KEYS), "
        "the manifest must also be signed by one of the given public keys and unchanged "
        "since: the signer is named, and an unsigned, unknown or altered export is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "folder", nargs="+",
            help="The export folder (the one holding manifest.json); with --chain, several.",
        )  # fmt: skip
        parser.add_argument(
            "--chain", action="store_true",
            help="The folders are a plan's incremental exports, oldest first: check each, "
            "and that each follows the one before with no rows missing or twice.",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="Print JSON for machines.")
        parser.add_argument(
            "--against", metavar="CONNECTION",
            help="A connection the export was loaded into (adu_load): compare its tables.",
        )  # fmt: skip
        parser.add_argument(
            "--schema-map", action="append", default=[], metavar="SRC=DST",
            help="With --against: the schema map the load used (repeat).",
        )  # fmt: skip
        parser.add_argument(
            "--trust", action="append", default=[], metavar="KEYFILE",
            help="A public key (PEM, from adu_keys public) whose signature is accepted "
            "(repeat; default: ADU_TRUSTED_KEYS).",
        )  # fmt: skip
        parser.add_argument("--as", dest="as_user", metavar="USERNAME", help="Act for this user.")

    def handle(self, *args, **options):
        from exports.verify import OK, BadManifest, verify  # pyarrow: not for --help

        if options["chain"]:
            return self._chain(options)
        if len(options["folder"]) > 1:
            raise CommandError("Give one export folder, or several with --chain.")
        options["folder"] = options["folder"][0]
        signer = self._signer(options)
        if options["against"]:
            return self._against(options)
        try:
            report = verify(Path(options["folder"]))
        except BadManifest as error:
            raise CommandError(str(error)) from None
        report["signed_by"] = signer
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            if signer:
                self.stdout.write(self.style.SUCCESS(f"Signed by {signer}."))
            for table in report["tables"]:
                name = f"{table['schema']}.{table['table']}"
                line = f"{name:40} {table['status']:16} {table['detail']}"
                self.stdout.write(
                    self.style.SUCCESS(line) if table["status"] == OK else self.style.ERROR(line)
                )
            for path in report["unlisted"]:
                self.stdout.write(self.style.ERROR(f"{path:40} {'not in the manifest':16}"))
            bad = sum(1 for t in report["tables"] if t["status"] != OK)
            summary = f"{len(report['tables'])} table(s) checked, {bad} not ok."
            if report["unlisted"]:
                summary += f" {len(report['unlisted'])} file(s) not in the manifest."
            style = self.style.SUCCESS if report["ok"] else self.style.ERROR
            self.stdout.write(style(summary))
        sys.exit(0 if report["ok"] else 1)

    def _chain(self, options):
        from exports.verify import OK, BadManifest, verify_chain

        try:
            for folder in options["folder"]:
                self._signer({**options, "folder": folder})
            report = verify_chain([Path(f) for f in options["folder"]])
        except BadManifest as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for folder, checked in zip(options["folder"], report["exports"], strict=True):
                bad = sum(1 for t in checked["tables"] if t["status"] != OK)
                line = f"{folder:60} {len(checked['tables'])} table(s), {bad} not ok"
                self.stdout.write(
                    self.style.SUCCESS(line) if checked["ok"] else self.style.ERROR(line)
                )
            for problem in report["problems"]:
                self.stdout.write(self.style.ERROR(problem))
            summary = f"Chain of {len(options['folder'])} export(s): " + (
                "each follows the one before." if report["ok"] else "not ok."
            )
            self.stdout.write((self.style.SUCCESS if report["ok"] else self.style.ERROR)(summary))
        sys.exit(0 if report["ok"] else 1)

    def _signer(self, options) -> str:
        """Who signed the manifest, among the trusted keys; "" when none are given."""
        from exports.models import MANIFEST
        from transfer import keys, signing

        trust = options["trust"] or settings.TRUSTED_KEYS
        if not trust:
            return ""
        try:
            signer = signing.check(Path(options["folder"]) / MANIFEST, keys.trusted_keys(trust))
        except (keys.BadKey, signing.BadSignature) as error:
            raise CommandError(str(error)) from None
        return str(signer)

    def _against(self, options):
        from accounts.users import NoActingUser, acting_user
        from connections.models import Connection, ConnectionFailed
        from exports.selection import BadRequest
        from exports.verify import BadManifest
        from loads.creation import parse_schema_map, readable_folder
        from loads.verify import SAME, verify_against

        try:
            user = acting_user(options["as_user"])
            target = Connection.objects.usable_by(user).named(user, options["against"])
            folder = readable_folder(user, options["folder"])
            report = verify_against(folder, target, parse_schema_map(options["schema_map"]))
        except (NoActingUser, ConnectionFailed, BadRequest, BadManifest) as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for table in report["tables"]:
                line = f"{table['target']:40} {table['status']:18} {table['detail']}"
                ok = table["status"] == SAME
                self.stdout.write(self.style.SUCCESS(line) if ok else self.style.ERROR(line))
            bad = sum(1 for t in report["tables"] if t["status"] != SAME)
            summary = (
                f"{len(report['tables'])} table(s) compared with '{target.name}', {bad} not ok."
            )
            style = self.style.SUCCESS if report["ok"] else self.style.ERROR
            self.stdout.write(style(summary))
        sys.exit(0 if report["ok"] else 1)
