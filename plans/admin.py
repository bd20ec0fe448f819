from django import forms
from django.contrib import admin
from django.utils import timezone

from plans.models import Delivery, ExportPlan, Notification, PlanRefused, PlanRun


class ExportPlanForm(forms.ModelForm):
    class Meta:
        model = ExportPlan
        fields = [
            "name", "owner", "connection", "definition", "incremental", "folder_pattern",
            "cron", "every_minutes", "timezone", "paused",
        ]  # fmt: skip

    def clean(self):
        data = super().clean()
        names = [f.name for f in ExportPlan._meta.fields if f.name in data]
        plan = ExportPlan(**{name: data[name] for name in names})
        if "connection" not in data:
            return data  # its own error is shown
        try:
            plan.refuse_unless_valid()
        except PlanRefused as error:
            field = error.field if error.field in self.fields else None
            raise forms.ValidationError({field: str(error)} if field else str(error)) from None
        return data


class NotificationInline(admin.TabularInline):
    model = Notification
    fields = ("channel", "address", "when")  # the webhook's secret is never shown
    extra = 0


@admin.register(ExportPlan)
class ExportPlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "connection",
        "owner",
        "cron",
        "every_minutes",
        "timezone",
        "paused",
        "next_run_at",
    )
    list_filter = ("paused",)
    search_fields = ("name",)
    readonly_fields = ("next_run_at", "created_at")
    inlines = [NotificationInline]
    form = ExportPlanForm

    def save_model(self, request, obj, form, change):
        obj.next_run_at = None if obj.paused else obj.next_after(timezone.now())
        super().save_model(request, obj, form, change)


class RecordAdmin(admin.ModelAdmin):
    """Read-only: a record of what happened."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PlanRun)
class PlanRunAdmin(RecordAdmin):
    """What came of each time a plan was due."""

    list_display = ("plan", "at", "trigger", "outcome", "job", "note")
    list_filter = ("outcome", "trigger")


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    list_display = ("notification", "job", "event", "status", "tries", "last_error", "sent_at")
    list_filter = ("status", "event")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """A user's notifications (of all their jobs) or a plan's. A new webhook gets its
    signing secret here, shown once; it is never shown again."""

    list_display = ("__str__", "user", "plan", "when")
    fields = ("user", "plan", "channel", "address", "when")

    def save_model(self, request, obj, form, change):
        import secrets

        new_secret = obj.channel == Notification.Channel.WEBHOOK and not str(obj.secret or "")
        if new_secret:
            obj.secret = secrets.token_urlsafe(32)
        super().save_model(request, obj, form, change)
        if new_secret:
            self.message_user(
                request,
                f"The webhook's signing secret, shown only now: {obj.secret} (each POST carries "
                "X-ADU-Signature: sha256=HMAC-SHA-256 of its body with it).",
                level="warning",
            )
