"""The audit trail: who did what, when, from where. Written once, never changed."""

import contextvars

from django.conf import settings
from django.db import models

from adu_site.proxy import client_address
from adu_site.redaction import redact

# The request being served, so that a model-level action (a job created, a connection
# changed) records the address and browser of whoever caused it; None in a command.
current_request: contextvars.ContextVar = contextvars.ContextVar("adu_request", default=None)


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        LOGIN = "login"
        LOGOUT = "logout"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOCKOUT = "lockout"
        CONNECTION_CREATE = "connection_create", "Connection created"
        CONNECTION_UPDATE = "connection_update", "Connection updated"
        CONNECTION_DELETE = "connection_delete", "Connection deleted"
        CONNECTION_TEST = "connection_test", "Connection tested"
        CONNECTION_SHARE = "connection_share", "Connection sharing changed"
        SAVED_QUERY_CREATE = "saved_query_create", "Saved query created"
        SAVED_QUERY_UPDATE = "saved_query_update", "Saved query updated"
        SAVED_QUERY_DELETE = "saved_query_delete", "Saved query deleted"
        SENSITIVE_COLUMN_CREATE = "sensitive_column_create", "Sensitive-column rule created"
        SENSITIVE_COLUMN_UPDATE = "sensitive_column_update", "Sensitive-column rule updated"
        SENSITIVE_COLUMN_DELETE = "sensitive_column_delete", "Sensitive-column rule deleted"
        DISCOVERY = "discovery"
        QUERY_PREVIEW = "query_preview", "Query previewed"
        JOB_CREATE = "job_create", "Job created"
        JOB_CANCEL = "job_cancel", "Job cancelled"
        JOB_RETRY = "job_retry", "Job retried"
        JOB_DELETE = "job_delete", "Job deleted"
        LOAD_CREATE = "load_create", "Load created"
        LOAD_FINISH = "load_finish", "Load finished"
        LOAD_CANCEL = "load_cancel", "Load cancelled"
        FILE_DOWNLOAD = "file_download", "File downloaded"
        LOG_DOWNLOAD = "log_download", "Log downloaded"
        ADMIN_CHANGE = "admin_change", "Admin change"
        KEY_ROTATION = "key_rotation", "Key rotation"
        KEY_PRINT = "key_print", "Public key printed"
        BUNDLE_CREATE = "bundle_create", "Bundle made"
        RECEIVE = "receive", "Bundle received"
        RECEIVE_REJECT = "receive_reject", "Bundle refused"
        CLEANUP = "cleanup", "Clean-up"
        PLAN_CREATE = "plan_create", "Plan created"
        PLAN_UPDATE = "plan_update", "Plan changed"
        PLAN_DELETE = "plan_delete", "Plan removed"
        PLAN_RUN = "plan_run", "Plan run"
        TOKEN_CREATE = "token_create", "API token created"
        TOKEN_REVOKE = "token_revoke", "API token revoked"
        # At most one per token per minute (see api.models.ApiToken.note_use): a script
        # polling a job every second would otherwise bury every other event.
        TOKEN_USE = "token_use", "API token used"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as typed: a failed login names no user row, and users may be deleted later.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=Action, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}"


def record(
    action: str,
    *,
    user=None,
    username: str = "",
    obj=None,
    object_type: str = "",
    object_id: str = "",
    request=None,
    **details,
):
    """Add one event. The user, address and browser come from the request being served
    unless given; details are cleaned of anything that looks like a secret."""
    request = request or current_request.get()
    if user is None and request is not None and request.user.is_authenticated:
        user = request.user
    if user is not None and not getattr(user, "pk", None):
        user = None
    return AuditEvent.objects.create(
        user=user,
        username=username or (user.get_username() if user else ""),
        action=action,
        object_type=obj._meta.label_lower if obj is not None else object_type,
        object_id=str(obj.pk) if obj is not None else str(object_id),
        details=_clean(details),
        ip_address=_address(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300] if request else "",
    )


def _clean(details):
    """Plain JSON with every string redacted, one by one (redacting the JSON text whole
    would let a pattern run past a closing quote: `secret = p.ssn"}` is not JSON)."""
    if isinstance(details, dict):
        return {redact(str(key)): _clean(value) for key, value in details.items()}
    if isinstance(details, list | tuple | set | frozenset):
        return [_clean(value) for value in details]
    if details is None or isinstance(details, bool | int | float):
        return details
    return redact(str(details))


def _address(request):
    # The same address django-axes locks out (AXES_CLIENT_IP_CALLABLE): REMOTE_ADDR, or
    # X-Forwarded-For only from a proxy in ADU_FORWARDED_ALLOW_IPS.
    return client_address(request)
