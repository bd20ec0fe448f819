"""Rule pages: list (per connection), create, edit and delete."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts import roles
from connections.models import Connection
from quality.forms import RuleForm
from quality.models import Rule

PREFILLED = ("connection", "schema", "table")


def _editable(request, pk) -> Rule:
    # A rule the user may not change is a 404: the page must not confirm it exists.
    return get_object_or_404(Rule.objects.editable_by(request.user), pk=pk)


def _list_of(rule: Rule):
    return redirect(f"{reverse('rule_list')}?connection={rule.connection_id}")


@require_GET
def rule_list(request):
    """Rules the user may see, or only those of ?connection=ID."""
    rules = Rule.objects.visible_to(request.user).select_related("connection")
    connection = None
    pk = request.GET.get("connection", "")
    if pk:
        if not pk.isdigit():
            raise Http404("Choose a connection.")
        connection = get_object_or_404(Connection.objects.visible_to(request.user), pk=pk)
        rules = rules.filter(connection=connection)
    context = {
        "rules": rules,
        "connection": connection,
        "connections": Connection.objects.visible_to(request.user),
    }
    return render(request, "quality/list.html", context)


@require_http_methods(["GET", "POST"])
def rule_create(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot add rules.")
    initial = {name: request.GET[name] for name in PREFILLED if name in request.GET}
    form = RuleForm(request.POST or None, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        rule = form.save(commit=False)
        rule.created_by = request.user
        rule.save()
        messages.success(request, f"Rule '{rule}' saved.")
        return _list_of(rule)
    return render(request, "quality/form.html", {"form": form})


@require_http_methods(["GET", "POST"])
def rule_edit(request, pk):
    rule = _editable(request, pk)
    form = RuleForm(request.POST or None, instance=rule, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Rule '{rule}' saved.")
        return _list_of(rule)
    return render(request, "quality/form.html", {"form": form, "rule": rule})


@require_http_methods(["GET", "POST"])
def rule_delete(request, pk):
    rule = _editable(request, pk)
    if request.method == "POST":
        rule.delete()
        messages.success(request, f"Rule '{rule}' deleted.")
        return _list_of(rule)
    return render(request, "quality/delete.html", {"rule": rule})
