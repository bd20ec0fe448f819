"""Accounts use Django's own User; this module holds what ADU adds to it."""

import os
import secrets

from django.contrib.auth import get_user_model


def ensure_admin(username: str = "admin") -> tuple[bool, str | None]:
    """Create the first superuser if there is none: (created, the generated password or None).

    The password comes from ADU_ADMIN_PASSWORD when set (and is then never echoed), else
    it is generated for the caller to show once.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return False, None
    given = os.environ.get("ADU_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    return True, None if given else password


class NoActingUser(Exception):
    pass


def acting_user(username: str | None):
    """Whom a management command acts for: --as, else ADU_CLI_USER, else the only superuser."""
    User = get_user_model()
    username = username or os.environ.get("ADU_CLI_USER")
    if username:
        try:
            return User.objects.get(username=username, is_active=True)
        except User.DoesNotExist:
            raise NoActingUser(f"There is no active user '{username}'.") from None
    superusers = list(User.objects.filter(is_superuser=True, is_active=True)[:2])
    if len(superusers) == 1:
        return superusers[0]
    raise NoActingUser(
        "Say whom this command acts for with --as USERNAME or ADU_CLI_USER "
        f"({'there are several superusers' if superusers else 'there is no superuser'})."
    )
