"""List the schemas and tables a connection can export."""

from adu_site.commands import AduCommand, human_bytes
from connections.models import Connection


class Command(AduCommand):
    help = (
        "Connects and lists the schemas (system schemas left out) and their tables and "
        "views with estimated rows and size."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The connection's name.")
        parser.add_argument("--schema", help="Only this schema.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        user = self.user(options)
        connection = Connection.objects.usable_by(user).named(user, options["name"])
        tables = connection.discover(user, options["schema"])
        rows = [
            {
                "schema": t.schema,
                "table": t.name,
                "kind": t.kind,
                "rows_estimate": t.rows_estimate,
                "bytes": t.bytes,
            }
            for t in tables
        ]
        lines = [f"{'SCHEMA':20} {'TABLE':32} {'KIND':18} {'ROWS (est.)':>12} {'SIZE':>10}"]
        lines += [
            f"{r['schema']:20} {r['table']:32} {r['kind']:18} "
            f"{_count(r['rows_estimate']):>12} {human_bytes(r['bytes']):>10}"
            for r in rows
        ]
        self.emit(options, rows, "\n".join(lines) if rows else "No tables found.")


def _count(value):
    return "?" if value is None else f"{value:,}"
