"""Verify an export folder on the receiving side: files, hashes, row counts, schemas."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Checks an export folder against its manifest.json: every file is present, has the "
        "recorded size and SHA-256, its Parquet footer has the recorded rows and schema, "
        "and each table's rows add up to the source's count, and no other file is in the "
        "folder. Needs no database. Exit 0 only when every table is ok and no file is "
        "unlisted."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", help="The export folder (the one holding manifest.json).")
        parser.add_argument("--json", action="store_true", help="Print JSON for machines.")

    def handle(self, *args, **options):
        from exports.verify import OK, BadManifest, verify  # pyarrow: not for --help

        try:
            report = verify(Path(options["folder"]))
        except BadManifest as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
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
