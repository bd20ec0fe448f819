"""Events that Django announces: logins, logouts, failed logins, changes made in the admin."""

from axes.signals import user_locked_out
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save

from audit.models import AuditEvent, record

ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def connect():
    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
    post_save.connect(_admin_change, sender=LogEntry, dispatch_uid="audit-admin")
    user_locked_out.connect(_locked_out, dispatch_uid="audit-lockout")


def _logged_in(sender, request, user, **kwargs):
    record(AuditEvent.Action.LOGIN, user=user, request=request)


def _logged_out(sender, request, user, **kwargs):
    record(AuditEvent.Action.LOGOUT, user=user, request=request)


def _login_failed(sender, credentials, request=None, **kwargs):
    # `credentials` holds the password too (cleansed by Django, but keep only the name).
    record(
        AuditEvent.Action.LOGIN_FAILED,
        username=str(credentials.get("username", ""))[:150],
        request=request,
    )


def _locked_out(sender, request, username, ip_address, **kwargs):
    record(AuditEvent.Action.LOCKOUT, username=str(username or "")[:150], request=request)


def _admin_change(sender, instance: LogEntry, created, **kwargs):
    if not created:
        return
    record(
        AuditEvent.Action.ADMIN_CHANGE,
        user=instance.user,
        object_type=instance.content_type.model_class()._meta.label_lower
        if instance.content_type and instance.content_type.model_class()
        else "",
        object_id=instance.object_id or "",
        change=ADMIN_ACTIONS.get(instance.action_flag, str(instance.action_flag)),
        object=instance.object_repr,
        message=instance.get_change_message(),
    )
