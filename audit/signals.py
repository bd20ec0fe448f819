"""Events that Django announces: logins, logouts, failed logins, changes made in the admin,
and saved queries and sensitive-column rules created, changed or deleted (in the portal, the
admin, a command or with their connection: every way they change passes here)."""

from axes.signals import user_locked_out
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.exceptions import ObjectDoesNotExist
from django.db.models.signals import post_delete, post_save, pre_save

from audit.models import AuditEvent, record

ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}
# The models whose changes are on the trail: what is told of one ({detail: field}; a
# rule's `action` is told as "policy", record's own `action` is the event's), and the
# (create, update, delete) events. What a rule or query was matters as much as that it changed.
WATCHED = {
    "connections.SavedQuery": (
        {"connection": "connection", "name": "name", "sql": "sql"},
        (
            AuditEvent.Action.SAVED_QUERY_CREATE,
            AuditEvent.Action.SAVED_QUERY_UPDATE,
            AuditEvent.Action.SAVED_QUERY_DELETE,
        ),
    ),
    "connections.SensitiveColumn": (
        {"connection": "connection", "pattern": "pattern", "policy": "action"},
        (
            AuditEvent.Action.SENSITIVE_COLUMN_CREATE,
            AuditEvent.Action.SENSITIVE_COLUMN_UPDATE,
            AuditEvent.Action.SENSITIVE_COLUMN_DELETE,
        ),
    ),
}


def connect():
    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
    post_save.connect(_admin_change, sender=LogEntry, dispatch_uid="audit-admin")
    user_locked_out.connect(_locked_out, dispatch_uid="audit-lockout")
    for label in WATCHED:
        pre_save.connect(_remember_before, sender=label, dispatch_uid=f"audit-before-{label}")
        post_save.connect(_saved, sender=label, dispatch_uid=f"audit-saved-{label}")
        post_delete.connect(_deleted, sender=label, dispatch_uid=f"audit-deleted-{label}")


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


def _watched(sender):
    return WATCHED[sender._meta.label]


def _told(instance, fields: dict) -> dict:
    told = {}
    for detail, field in fields.items():
        if field == "connection":
            try:
                told[detail] = instance.connection.name
            except ObjectDoesNotExist:  # deleted with its connection
                told[detail] = ""
        else:
            told[detail] = getattr(instance, field)
    return told


def _remember_before(sender, instance, raw=False, **kwargs):
    if raw or instance.pk is None:
        return
    fields, _ = _watched(sender)
    stored = sender.objects.select_related("connection").filter(pk=instance.pk).first()
    instance._audit_before = _told(stored, fields) if stored else None


def _saved(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    fields, (create, update, _) = _watched(sender)
    now = _told(instance, fields)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        record(create, obj=instance, **now)
        return
    changed = [detail for detail in fields if before[detail] != now[detail]]
    if changed:
        record(
            update,
            obj=instance,
            **now,
            changed=changed,
            before={detail: before[detail] for detail in changed},
        )


def _deleted(sender, instance, **kwargs):
    fields, (_, _, delete) = _watched(sender)
    record(delete, obj=instance, **_told(instance, fields))
