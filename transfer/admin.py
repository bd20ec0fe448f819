from django.contrib import admin

from transfer.models import Receipt


@admin.register(Receipt)
class ReceiptAdmin(admin.ModelAdmin):
    """Read-only: a receipt records what came across the gap, once."""

    list_display = ("bundle", "received_at", "signed_by", "tables", "rows", "folder")
    search_fields = ("bundle", "manifest_sha256", "folder")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
