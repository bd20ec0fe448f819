"""Portal pages of the API: the profile page with the user's API tokens, and the API's
reference, rendered on the server from the same OpenAPI document the API serves."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from api import reference as reference_doc
from api.forms import TokenForm
from api.models import ApiToken


@never_cache
@require_http_methods(["GET", "POST"])
def profile(request):
    """The user's role and groups, and their API tokens: create (shown once) and revoke."""
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        token, created = ApiToken.issue(
            request.user, form.cleaned_data["name"], days=form.cleaned_data["expires"]
        )
        form = TokenForm()
    context = {
        "form": form,
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
    return render(request, "api/reference.html", {"api": reference_doc.document()})
