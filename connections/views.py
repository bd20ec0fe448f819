"""Connection pages: list, create, edit, delete, test in place, and discovery partials."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from audit.models import AuditEvent, record
from connections.forms import ConnectionForm
from connections.models import Connection, ConnectionFailed


def _editable(request, pk) -> Connection:
    # A connection the user may not change is a 404: the page must not confirm it exists.
    return get_object_or_404(Connection.objects.editable_by(request.user), pk=pk)


def _usable(request, pk) -> Connection:
    return get_object_or_404(Connection.objects.usable_by(request.user), pk=pk)


@require_GET
def connection_list(request):
    user = request.user
    context = {
        "connections": Connection.objects.visible_to(user)
        .select_related("owner")
        .prefetch_related("shared_with"),
        "editable": set(Connection.objects.editable_by(user).values_list("pk", flat=True)),
        "usable": set(Connection.objects.usable_by(user).values_list("pk", flat=True)),
        "can_create": roles.is_operator(user),
    }
    return render(request, "connections/list.html", context)


@require_http_methods(["GET", "POST"])
def connection_create(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot add connections.")
    form = ConnectionForm(
        request.POST or None, request.FILES or None, owner=request.user, user=request.user
    )
    if request.method == "POST" and form.is_valid():
        connection = form.save()
        messages.success(request, f"Connection '{connection.name}' saved.")
        return redirect("connection_list")
    return render(request, "connections/form.html", {"form": form})


@require_http_methods(["GET", "POST"])
def connection_edit(request, pk):
    connection = _editable(request, pk)
    form = ConnectionForm(
        request.POST or None, request.FILES or None, instance=connection, user=request.user
    )
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Connection '{connection.name}' saved.")
        return redirect("connection_list")
    return render(request, "connections/form.html", {"form": form, "connection": connection})


@require_http_methods(["GET", "POST"])
def connection_delete(request, pk):
    connection = _editable(request, pk)
    jobs = connection.export_jobs.count()
    if request.method == "POST" and not jobs:
        record(AuditEvent.Action.CONNECTION_DELETE, obj=connection, name=connection.name)
        connection.delete()
        messages.success(request, f"Connection '{connection.name}' deleted.")
        return redirect("connection_list")
    return render(request, "connections/delete.html", {"connection": connection, "jobs": jobs})


@require_POST
def connection_test(request, pk):
    connection = _usable(request, pk)
    try:
        report = connection.test_link(by=request.user)
        result = {"ok": True, "text": report.summary(), "warning": report.warning()}
    except ConnectionFailed as error:
        result = {"ok": False, "text": str(error)}
    return render(request, "connections/_test_result.html", result)


@require_GET
def connection_tables(request):
    """The tables of one schema (or all) of ?connection=ID, for the new-export form."""
    pk = request.GET.get("connection", "")
    if not pk.isdigit():
        raise Http404("Choose a connection.")
    connection = _usable(request, int(pk))
    schema = request.GET.get("schema") or None
    try:
        every_table = connection.discover(request.user)
        error = None
    except ConnectionFailed as failure:
        every_table, error = [], str(failure)
    schemas = sorted({t.schema for t in every_table})
    tables = [t for t in every_table if schema is None or t.schema == schema]
    context = {
        "connection": connection,
        "tables": tables,
        "schemas": schemas,
        "schema": schema or "",
        "error": error,
    }
    return render(request, "connections/_tables.html", context)
