from django.urls import path

from api import views
from api.v1 import api

# The API authenticates each request itself (a token or the session) and answers 401 in
# JSON: LoginRequiredMiddleware must not redirect its callers to the login page.
api_urls = api.urls
for pattern in api_urls[0]:
    pattern.callback.login_required = False

urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/<int:pk>/revoke/", views.revoke_token, name="token_revoke"),
    path("api/", views.reference, name="api_reference"),
    path("api/v1/", api_urls),
]
