"""Accounts use Django's own User; this module holds what ADU adds to it."""

import os
import secrets

from django.contrib.auth import get_user_model


def ensure_admin(username: str = "admin") -> str | None:
    """Create the first superuser if there is none; return its new password, or None if one existed.

    The password comes from ADU_ADMIN_PASSWORD when set, else it is generated and shown once.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = os.environ.get("ADU_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    return password
