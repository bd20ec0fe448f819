"""Personal API tokens: shown once when made, stored only as their SHA-256, revocable."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent, record

PREFIX = "adu_"
# 32 random bytes: a hash lookup needs no salt or slow hash when nobody can guess the input.
TOKEN_BYTES = 32
# How much of a token its list shows, so its owner can tell tokens apart; far too little
# to use it (the rest still holds more than 200 random bits).
SHOWN_CHARS = len(PREFIX) + 4
# Token use goes on the audit trail at most once per token per this many seconds, and
# last_used_at is that precise: a script that polls a job every second would otherwise
# write an event (and a row update) per request and bury every other event.
USE_RECORD_SECONDS = 60


class InvalidToken(Exception):
    """The token cannot be used; the message says why in one sentence."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        now = timezone.now()
        return self.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True
        )

    def authenticate(self, token: str) -> "ApiToken":
        """The active token with this value, with its user; InvalidToken if there is none."""
        found = (
            self.select_related("user").filter(digest=digest(token)).first()
            if token.startswith(PREFIX) and len(token) < 200
            else None
        )
        if found is None or not found.user.is_active:
            raise InvalidToken("This API token is not valid.")
        if found.revoked_at:
            raise InvalidToken("This API token was revoked.")
        if found.expires_at and found.expires_at <= timezone.now():
            raise InvalidToken("This API token has expired.")
        return found


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the script.")
    shown = models.CharField(max_length=16, help_text="Its first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.shown}…)"

    @classmethod
    def issue(cls, user, name: str, days: int | None = None) -> tuple["ApiToken", str]:
        """A new token for the user and its plaintext, which is never stored nor shown again."""
        plaintext = PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        token = cls.objects.create(
            user=user,
            name=name,
            shown=plaintext[:SHOWN_CHARS],
            digest=digest(plaintext),
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        record(
            AuditEvent.Action.TOKEN_CREATE,
            user=user,
            obj=token,
            name=name,
            expires_at=token.expires_at,
        )
        return token, plaintext

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def revoke(self, by) -> bool:
        """Revoke it now, on the audit trail; False if it was revoked already."""
        now = timezone.now()
        done = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=by
        )
        if done:
            self.revoked_at, self.revoked_by = now, by
            record(
                AuditEvent.Action.TOKEN_REVOKE,
                user=by,
                obj=self,
                name=self.name,
                owner=self.user.get_username(),
            )
        return bool(done)

    def note_use(self, request=None):
        """Keep last_used_at and the audit trail up to date, at most once a minute.

        A conditional update, so that of several requests at once (other processes, other
        hosts) exactly one writes the event.
        """
        now = timezone.now()
        stale = Q(last_used_at__isnull=True) | Q(
            last_used_at__lt=now - timedelta(seconds=USE_RECORD_SECONDS)
        )
        if ApiToken.objects.filter(stale, pk=self.pk).update(last_used_at=now):
            self.last_used_at = now
            record(
                AuditEvent.Action.TOKEN_USE,
                user=self.user,
                obj=self,
                request=request,
                name=self.name,
                method=request.method if request else "",
                path=request.path if request else "",
            )
