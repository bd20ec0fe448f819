"""Who is calling the API: a personal token (`Authorization: Bearer …`) or the browser's
session (with its CSRF token for unsafe methods), and how often they may call it."""

import time

from django.conf import settings
from django.core.cache import cache
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from api.models import ApiToken, InvalidToken

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ApiError(Exception):
    """An answer of the API other than success: a status, a stable code and one sentence."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers: dict[str, str] = {}


class NotAuthenticated(ApiError):
    def __init__(self, message: str):
        super().__init__(401, "not_authenticated", message)
        self.headers["WWW-Authenticate"] = 'Bearer realm="adu"'


class RateLimited(ApiError):
    def __init__(self, limit: int, wait: int):
        super().__init__(
            429, "rate_limited", f"More than {limit} requests in a minute: try again in {wait} s."
        )
        self.headers["Retry-After"] = str(wait)


class BearerToken(HttpBearer):
    """A personal API token. A request that names one is judged by it alone: a bad token
    is a 401 even when the browser also has a session."""

    def __call__(self, request):
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise NotAuthenticated("The Authorization header must be 'Bearer <token>'.")
        return self.authenticate(request, value.strip())

    def authenticate(self, request, token):
        try:
            found = ApiToken.objects.authenticate(token)
        except InvalidToken as error:
            raise NotAuthenticated(str(error)) from None
        # The rest of ADU (roles, querysets, the audit trail) asks request.user.
        request.user = found.user
        request.api_token = found
        throttle(f"token:{found.digest[:16]}")
        found.note_use(request)
        return found.user


class SessionCookie(APIKeyCookie):
    """The portal's login session, for the API from the browser; unsafe methods need the
    CSRF token (the X-CSRFToken header), as the portal's own forms do."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request):
        if "Authorization" in request.headers or not request.user.is_authenticated:
            return None
        return self.authenticate(request, request.COOKIES.get(self.param_name))

    def authenticate(self, request, key):
        if request.method not in SAFE_METHODS and check_csrf(request):
            raise ApiError(
                403,
                "csrf_failed",
                "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken "
                "header, or use an API token.",
            )
        throttle(f"user:{request.user.pk}")
        return request.user


AUTH = [BearerToken(), SessionCookie()]


def authenticate(request):
    """The calling user, for views outside the API's operations (the OpenAPI document)."""
    for method in AUTH:
        user = method(request)
        if user:
            return user
    raise NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")


def throttle(who: str):
    """At most API_RATE_PER_MINUTE requests per token or session user in each clock minute.

    Counted in Django's cache: with the default local-memory cache each portal process
    counts on its own; point CACHES at a shared cache to count across processes.
    """
    limit = settings.API_RATE_PER_MINUTE
    if not limit:
        return
    now = time.time()
    key = f"adu-api-rate:{who}:{int(now // 60)}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    if count > limit:
        raise RateLimited(limit, max(1, 60 - int(now % 60)))
