from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

from adu_site.health import healthz

admin.site.site_header = "ADU administration"
admin.site.site_title = "ADU administration"
admin.site.index_title = "Audit, users and clean-up"


@login_not_required
@require_safe
def favicon(request):
    # Browsers ask for /favicon.ico on every page that names no icon (the admin's, the
    # API's JSON): answer with the portal's icon rather than a 404 in every log.
    return RedirectView.as_view(url=static("adu/favicon.svg"), permanent=False)(request)


urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon),
    path("connections/", include("connections.urls")),
    path("rules/", include("quality.urls")),
    path("loads/", include("loads.urls")),
    path("transfer/", include("transfer.urls")),
    path("plans/", include("plans.urls")),
    path("", include("api.urls")),
    path("", include("exports.urls")),
]
