"""Connection pages: list, create, edit, delete, test in place, and discovery partials."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections.forms import ConnectionForm
from connections.models import Connection, ConnectionFailed


def _own(request, pk) -> Connection:
    # Another user's connection is a 404: the page must not confirm it exists.
    return get_object_or_404(Connection.objects.filter(owner=request.user), pk=pk)


@require_GET
def connection_list(request):
    connections = Connection.objects.filter(owner=request.user)
    return render(request, "connections/list.html", {"connections": connections})


@require_http_methods(["GET", "POST"])
def connection_create(request):
    form = ConnectionForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        connection = form.save()
        messages.success(request, f"Connection '{connection.name}' saved.")
        return redirect("connection_list")
    return render(request, "connections/form.html", {"form": form})


@require_http_methods(["GET", "POST"])
def connection_edit(request, pk):
    connection = _own(request, pk)
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Connection '{connection.name}' saved.")
        return redirect("connection_list")
    return render(request, "connections/form.html", {"form": form, "connection": connection})


@require_http_methods(["GET", "POST"])
def connection_delete(request, pk):
    connection = _own(request, pk)
    jobs = connection.export_jobs.count()
    if request.method == "POST" and not jobs:
        connection.delete()
        messages.success(request, f"Connection '{connection.name}' deleted.")
        return redirect("connection_list")
    return render(request, "connections/delete.html", {"connection": connection, "jobs": jobs})


@require_POST
def connection_test(request, pk):
    connection = _own(request, pk)
    try:
        result = {"ok": True, "text": connection.driver().test(connection)}
    except ConnectionFailed as error:
        result = {"ok": False, "text": str(error)}
    return render(request, "connections/_test_result.html", result)


@require_GET
def connection_tables(request):
    """The tables of one schema (or all) of ?connection=ID, for the new-export form."""
    pk = request.GET.get("connection", "")
    if not pk.isdigit():
        raise Http404("Choose a connection.")
    connection = _own(request, int(pk))
    schema = request.GET.get("schema") or None
    try:
        every_table = connection.driver().tables(connection)
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
