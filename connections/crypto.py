"""Encryption at rest for stored secrets: MultiFernet over ADU_FERNET_KEYS (first key encrypts)."""

import typing

from django.conf import settings
from django.db import models

if typing.TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


def fernet() -> "MultiFernet":
    # cryptography is imported when a secret is read or written, not with the models: it
    # would cost every command's start-up 10 ms (tests/test_startup.py).
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key) for key in settings.FERNET_KEYS])


class Sealed(str):
    """A Fernet token standing for a secret that stays encrypted, saved back unchanged.

    from_db_value returns one when no configured key opens the token: it reads as an
    empty string, so a page listing connections still renders, and saving the row again
    does not destroy the secret. Key rotation writes its new tokens the same way.
    """

    def __new__(cls, token: str):
        value = super().__new__(cls, "")
        value.token = token
        return value


class EncryptedTextField(models.TextField):
    """A text field stored as a Fernet token; Python code only ever sees plaintext."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        from cryptography.fernet import InvalidToken  # see fernet()

        try:
            return fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            return Sealed(value)

    def get_prep_value(self, value):
        if isinstance(value, Sealed):
            return value.token
        if not value:
            return ""
        return fernet().encrypt(str(value).encode()).decode()


def rotate(token: str) -> str:
    """The secret encrypted again with the first key; InvalidToken if no key opens it."""
    return fernet().rotate(token.encode()).decode()
