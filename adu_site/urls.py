from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("connections/", include("connections.urls")),
    path("rules/", include("quality.urls")),
    path("", include("exports.urls")),
]
