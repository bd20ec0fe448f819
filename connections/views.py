"""Connection pages: list, a page of its own, create, edit, delete, test in place (also the
values of the form before they are saved), and discovery partials. (The new-export page's
table and column pickers are exports' views: connections imports nothing of exports.)"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from audit.models import AuditEvent, record
from connections.drivers import BadSelection
from connections.forms import ConnectionForm, SavedQueryForm
from connections.models import Connection, ConnectionFailed, SavedQuery


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


@require_GET
def connection_detail(request, pk):
    """A connection's own page: where it points (to those who may edit it), its sharing,
    Test, its schemas and tables (loaded in place), and the jobs of it the user may see."""
    visible = Connection.objects.visible_to(request.user).select_related("owner")
    connection = get_object_or_404(visible, pk=pk)
    context = {
        "connection": connection,
        "usable": Connection.objects.usable_by(request.user).filter(pk=pk).exists(),
        "jobs": connection.recent_jobs(request.user),
    }
    return render(request, "connections/detail.html", context)


@require_GET
def connection_discovery(request, pk):
    """The schemas of a connection with their tables, estimated rows and sizes."""
    connection = _usable(request, pk)
    try:
        context = {"schemas": connection.inventory(request.user)}
    except ConnectionFailed as error:
        context = {"error": str(error)}
    return render(request, "connections/_discovery.html", context)


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
    """Test the connection as it is stored."""
    return _test_result(request, _usable(request, pk))


@require_POST
def connection_test_typed(request, pk=None):
    """Test the values typed in the connection form, before they are saved: those of a new
    connection, or of one being edited (its stored password only where the form would
    keep it: not for a changed host, port, database, user, kind or SSL mode)."""
    if pk is None:
        if not roles.is_operator(request.user):
            raise PermissionDenied("Your role cannot add connections.")
        form = ConnectionForm(request.POST, request.FILES, owner=request.user, user=request.user)
    else:
        form = ConnectionForm(
            request.POST, request.FILES, instance=_editable(request, pk), user=request.user
        )
    form.is_valid()
    # The name and the sharing do not matter to a test: only these fields' errors stop it.
    for name in TESTED_FIELDS:
        if name in form.errors:
            error = f"{form[name].label}: {form.errors[name][0]}"
            return render(request, "connections/_test_result.html", {"error": error})
    connection = form.instance  # the typed values, never saved here
    if form.cleaned_data.get("ca_certificate_file"):
        connection.ca_certificate = form.cleaned_data["ca_certificate_file"]
    elif form.cleaned_data.get("clear_ca_certificate"):
        connection.ca_certificate = ""
    return _test_result(request, connection, typed=True)


TESTED_FIELDS = (
    "kind", "host", "port", "database", "username", "password", "sslmode", "connect_timeout",
    "ca_certificate_file",
)  # fmt: skip


def _test_result(request, connection, typed: bool = False):
    try:
        context = {"report": connection.test_link(by=request.user, typed=typed)}
    except ConnectionFailed as error:
        context = {"error": str(error)}
    return render(request, "connections/_test_result.html", context)


@require_GET
def query_list(request):
    queries = SavedQuery.objects.filter(
        connection__in=Connection.objects.visible_to(request.user)
    ).select_related("connection")
    editable = set(Connection.objects.editable_by(request.user).values_list("pk", flat=True))
    context = {
        "queries": queries,
        "editable": editable,
        "can_create": roles.is_operator(request.user),
    }
    return render(request, "connections/queries.html", context)


@require_http_methods(["GET", "POST"])
def query_create(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot add queries.")
    return _query_form(request, SavedQuery(created_by=request.user))


@require_http_methods(["GET", "POST"])
def query_edit(request, pk):
    return _query_form(request, _editable_query(request, pk))


def _query_form(request, query):
    initial = {"connection": request.GET.get("connection")} if not query.pk else None
    form = SavedQueryForm(request.POST or None, instance=query, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        query = form.save()
        messages.success(request, f"Query '{query.name}' saved.")
        return redirect("query_list")
    return render(request, "connections/query_form.html", {"form": form, "query": query})


@require_http_methods(["GET", "POST"])
def query_delete(request, pk):
    query = _editable_query(request, pk)
    if request.method == "POST":
        query.delete()
        messages.success(request, f"Query '{query.name}' deleted.")
        return redirect("query_list")
    return render(request, "connections/query_delete.html", {"query": query})


@require_POST
def query_preview(request):
    """The first 100 rows of the query in the form (policies applied, values cut), or
    why the source refuses it."""
    pk = request.POST.get("connection", "")
    if not pk.isdigit():
        return render(request, "connections/_query_preview.html", {"error": "Choose a connection."})
    # Preview shows source rows: only to those who may edit the connection.
    connection = _editable(request, int(pk))
    try:
        columns, rows = connection.preview_query(
            request.POST.get("sql", ""), request.user, PREVIEW_ROWS
        )
        context = {"columns": columns, "rows": rows, "limit": PREVIEW_ROWS}
    except (BadSelection, ConnectionFailed) as error:
        context = {"error": str(error)}
    return render(request, "connections/_query_preview.html", context)


PREVIEW_ROWS = 100


def _editable_query(request, pk) -> SavedQuery:
    editable = Connection.objects.editable_by(request.user)
    return get_object_or_404(SavedQuery.objects.filter(connection__in=editable), pk=pk)
