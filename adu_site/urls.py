from django.contrib import admin
from django.urls import include, path

from adu_site.health import healthz

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("connections/", include("connections.urls")),
    path("rules/", include("quality.urls")),
    path("", include("api.urls")),
    path("", include("exports.urls")),
]
