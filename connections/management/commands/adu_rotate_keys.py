"""Re-encrypt every stored secret with the first key of ADU_FERNET_KEYS."""

import getpass
import json

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from audit.models import AuditEvent, record
from connections.crypto import EncryptedTextField, Sealed, rotate


class Command(BaseCommand):
    help = (
        "Re-encrypts every stored secret with the first key in ADU_FERNET_KEYS. Run it after "
        "putting a new key first; when it reports no failures, the old keys can be removed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options):
        rotated, failed = 0, []
        with transaction.atomic():
            for model, field in _encrypted_fields():
                for pk, token in _stored_tokens(model, field):
                    try:
                        new_token = rotate(token)
                    except InvalidToken:
                        failed.append(f"{model._meta.verbose_name} '{model.objects.get(pk=pk)}'")
                        continue
                    model.objects.filter(pk=pk).update(**{field.name: Sealed(new_token)})
                    rotated += 1
        record(
            AuditEvent.Action.KEY_ROTATION,
            username=getpass.getuser(),  # an operating-system user: no ADU account runs this
            rotated=rotated,
            failed=len(failed),
        )
        if options["json"]:
            self.stdout.write(json.dumps({"rotated": rotated, "failed": failed}))
        else:
            self.stdout.write(f"Re-encrypted {rotated} secret(s) with the first key.")
        if failed:
            raise CommandError(
                "No configured key can decrypt the secret of "
                + ", ".join(failed)
                + ". Add the key it was saved with to ADU_FERNET_KEYS, or enter it again."
            )


def _encrypted_fields():
    for model in apps.get_models():
        for field in model._meta.fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


def _stored_tokens(model, field):
    """(pk, token) of every non-empty value, read without the field decrypting it."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(model._meta.pk.column)}, {quote(field.column)} "
            f"FROM {quote(model._meta.db_table)} WHERE {quote(field.column)} <> ''"
        )
        return cursor.fetchall()
