from django.contrib import admin, messages

from api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their owners on the profile page (the only time one is shown);
    here an ADU Admin sees them all and revokes any. Nothing here shows a token."""

    list_display = ["name", "user", "shown", "created_at", "expires_at", "last_used_at", "status"]
    list_filter = ["revoked_at", "expires_at", "user"]
    search_fields = ["name", "user__username", "shown"]
    readonly_fields = [
        "user", "name", "shown", "created_at", "expires_at", "last_used_at", "revoked_at",
        "revoked_by",
    ]  # fmt: skip
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the token stays on record with who revoked it

    @admin.display(description="Status")
    def status(self, token):
        return token.status

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        done = sum(token.revoke(by=request.user) for token in queryset.select_related("user"))
        messages.success(request, f"{done} token(s) revoked.")
