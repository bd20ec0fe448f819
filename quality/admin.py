from django.contrib import admin

from quality.forms import RuleForm
from quality.models import Rule


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    # The portal's form: a rule saved here is checked against the source the same way.
    form = RuleForm
    list_display = ["connection", "schema", "table", "column", "kind", "severity", "enabled"]
    list_filter = ["kind", "severity", "enabled", "connection"]
    search_fields = ["schema", "table", "column", "connection__name"]
    list_select_related = ["connection"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
