"""Add, list, test and remove source database connections from the command line."""

import os
import sys

from django.core.management.base import CommandError
from django.db import IntegrityError

from accounts import roles
from adu_site.commands import AduCommand
from audit.models import AuditEvent, record
from connections.models import (
    DEFAULT_PORTS,
    MAX_CA_BYTES,
    Connection,
    ConnectionFailed,
    parse_ca_certificate,
)


class Command(AduCommand):
    help = (
        "Manages connections to source databases. `add` stores a connection (the password "
        "is read from stdin or an environment variable, never from the command line, and "
        "stored encrypted); `list` shows them; `test` connects and prints the server "
        "version; `remove` deletes one that no export uses."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Store a new connection.")
        add.add_argument("name")
        add.add_argument("--kind", choices=Connection.Kind.values, default="postgresql")
        add.add_argument("--host", required=True)
        add.add_argument("--port", type=int)
        add.add_argument("--database", required=True)
        add.add_argument("--user", required=True)
        secret = add.add_mutually_exclusive_group()
        secret.add_argument(
            "--password-stdin", action="store_true", help="Read the password from stdin."
        )
        secret.add_argument("--password-env", metavar="VAR", help="Read it from this variable.")
        add.add_argument("--sslmode", choices=Connection.SSLMode.values, default="prefer")
        add.add_argument("--connect-timeout", type=int, default=10)
        add.add_argument(
            "--ca-file", metavar="PEM", help="CA certificate for sslmode verify-ca/verify-full."
        )
        add.add_argument(
            "--target",
            action="store_true",
            help="Mark it as a load target: adu_load may create tables in it and write to them.",
        )
        for name in ("list", "test", "remove"):
            sub = actions.add_parser(name)
            if name != "list":
                sub.add_argument("name")
        for sub in actions.choices.values():
            super().add_arguments(sub)

    def handle(self, *args, **options):
        user = self.user(options)
        getattr(self, f"_{options['action']}")(user, options)

    def _add(self, user, options):
        if not roles.is_operator(user):
            raise CommandError(
                f"{user.username} is not an ADU Operator: they cannot add connections."
            )
        password = ""
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        elif options["password_env"]:
            if options["password_env"] not in os.environ:
                raise CommandError(f"The variable {options['password_env']} is not set.")
            password = os.environ[options["password_env"]]
        ca_certificate = ""
        if options["ca_file"]:
            try:
                with open(options["ca_file"], "rb") as pem:
                    ca_certificate = parse_ca_certificate(pem.read(MAX_CA_BYTES + 1))
            except OSError as error:
                raise CommandError(f"Cannot read {options['ca_file']}: {error.strerror}.") from None
            except ValueError as error:
                raise CommandError(str(error)) from None
        try:
            connection = Connection.objects.create(
                owner=user,
                name=options["name"],
                kind=options["kind"],
                host=options["host"],
                port=options["port"] or DEFAULT_PORTS[options["kind"]],
                database=options["database"],
                username=options["user"],
                password=password,
                sslmode=options["sslmode"],
                connect_timeout=options["connect_timeout"],
                ca_certificate=ca_certificate,
                is_target=options["target"],
            )
        except IntegrityError:
            raise CommandError(f"You already have a connection named '{options['name']}'.")
        record(AuditEvent.Action.CONNECTION_CREATE, user=user, obj=connection, via="command")
        self.emit(options, _describe(connection), f"Added connection '{connection.name}'.")

    def _list(self, user, options):
        found = Connection.objects.visible_to(user).select_related("owner")
        # Where a connection points, only to those who may edit it (as on the portal).
        editable = set(Connection.objects.editable_by(user).values_list("pk", flat=True))
        rows = [_describe(c, where=c.pk in editable) for c in found]
        lines = [f"{'NAME':24} {'KIND':11} {'ADDRESS':32} {'DATABASE':16} USER"] + [
            f"{r['name']:24} {r['kind']:11} "
            + (
                f"{r['host'] + ':' + str(r['port']):32} {r['database']:16} {r['username']}"
                if r["host"] is not None
                else f"{'-':32} {'-':16} -"
            )
            for r in rows
        ]
        self.emit(options, rows, "\n".join(lines) if rows else "No connections.")

    def _test(self, user, options):
        connection = Connection.objects.usable_by(user).named(user, options["name"])
        try:
            report = connection.test_link(by=user)
        except ConnectionFailed as error:
            if options["json"]:
                self.emit(options, {"name": connection.name, "ok": False, "error": str(error)}, "")
            raise CommandError(str(error)) from None
        warning = report.warning()
        self.emit(
            options,
            {"name": connection.name, "ok": True, **report.as_dict(), "warning": warning},
            f"OK: {report.summary()}" + (f"\nWarning: {warning}" if warning else ""),
        )

    def _remove(self, user, options):
        connection = Connection.objects.editable_by(user).named(user, options["name"])
        if connection.export_jobs.exists():
            raise CommandError(
                f"Connection '{connection.name}' is used by {connection.export_jobs.count()} "
                "export job(s); delete those jobs first."
            )
        record(AuditEvent.Action.CONNECTION_DELETE, user=user, obj=connection, name=connection.name)
        connection.delete()
        self.emit(options, {"removed": options["name"]}, f"Removed '{options['name']}'.")


def _describe(connection: Connection, where: bool = True) -> dict:
    """The connection as listed; without `where`, its address, database, user and sslmode
    are null (for those who may use it but not edit it)."""
    return {
        "name": connection.name,
        "kind": connection.kind,
        "host": connection.host if where else None,
        "port": connection.port if where else None,
        "database": connection.database if where else None,
        "username": connection.username if where else None,
        "sslmode": connection.sslmode if where else None,
        "load_target": connection.is_target,
        "owner": connection.owner.username,
    }
