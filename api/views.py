"""Portal pages of the API: the profile page with the user's API tokens, and the API
browser (Swagger UI, vendored under static/, reading the OpenAPI document the API serves)."""

import secrets

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from api.forms import TokenForm
from api.models import ApiToken

# The token form's one-time nonces, in the session: the ones handed out and not yet used.
# A few, so that several open tabs each keep a working form.
NONCES_KEY = "token_form_nonces"
MAX_NONCES = 10


@never_cache
@require_http_methods(["GET", "POST"])
def profile(request):
    """The user's role and groups, and their API tokens: create (shown once) and revoke.

    The answer to the creating POST shows the token, so it cannot redirect (POST/redirect/
    GET would have to keep the token somewhere until the GET). Instead the form carries a
    one-time nonce: the browser re-sending that POST (reload, back) makes no second token."""
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        if _use_nonce(request):
            token, created = ApiToken.issue(
                request.user, form.cleaned_data["name"], days=form.cleaned_data["expires"]
            )
        else:
            messages.error(
                request,
                "This form was sent before, so no second token was made. A token is shown "
                "only once: if you did not copy it, revoke it and make a new one.",
            )
        form = TokenForm()
    context = {
        "form": form,
        "nonce": _new_nonce(request),
        # Rendered in this answer only (never_cache): never stored, not even in the session.
        "created": created,
        "tokens": request.user.api_tokens.all(),
        "groups": roles.teams(request.user).values_list("name", flat=True),
    }
    return render(request, "api/profile.html", context)


@require_POST
def revoke_token(request, pk):
    # Another user's token is a 404, like every object one may not see.
    token = get_object_or_404(request.user.api_tokens, pk=pk)
    if token.revoke(by=request.user):
        messages.success(request, f"Token '{token.name}' revoked: it no longer works.")
    return redirect("profile")


@require_GET
def reference(request):
    """The API browser; the page's script (static/adu/api-browser.js) starts Swagger UI."""
    return render(request, "api/reference.html")


def _new_nonce(request) -> str:
    nonce = secrets.token_urlsafe(16)
    request.session[NONCES_KEY] = [*request.session.get(NONCES_KEY, [])[-(MAX_NONCES - 1) :], nonce]
    return nonce


def _use_nonce(request) -> bool:
    """Whether this POST may make a token: its nonce was handed out and is now used up. A
    POST without one (a script, not a page's form) may: it cannot be a re-sent page."""
    nonce = request.POST.get("nonce")
    if nonce is None:
        return True
    outstanding = request.session.get(NONCES_KEY, [])
    if nonce not in outstanding:
        return False
    outstanding.remove(nonce)
    request.session[NONCES_KEY] = outstanding
    return True
