"""Portal pages for loads: the list, a new load, and a load's page with its tables live."""

from pathlib import Path

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from exports.models import ExportJob
from exports.selection import BadRequest
from loads.creation import create_load
from loads.forms import RECENT_EXPORTS_LIST, NewLoadForm
from loads.models import Load, counts_of
from loads.tasks import cancel_load, start_load

RECENT_EXPORTS = 10  # export folders the new-load page suggests


def _loads(request):
    return Load.objects.visible_to(request.user).select_related("target", "owner")


def _load(request, pk) -> Load:
    # A load the user may not see is a 404, never a 403 that confirms it exists.
    return get_object_or_404(_loads(request), pk=pk)


@require_GET
def load_list(request):
    return render(request, "loads/list.html", _list_context(request))


@require_GET
def load_list_rows(request):
    """The list's table alone, on the same page: polled while a load it shows has not
    finished."""
    return render(request, "loads/_load_table.html", _list_context(request))


def _list_context(request):
    page = Paginator(_loads(request), 25).get_page(request.GET.get("page"))
    counts = counts_of(page.object_list)
    for load in page:
        load.progress = counts[load.pk]
    return {"page": page, "unfinished": any(load.status not in Load.FINISHED for load in page)}


@require_http_methods(["GET", "POST"])
def load_new(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot start loads.")
    if request.method == "GET":
        form = NewLoadForm(user=request.user, initial={"folder": request.GET.get("folder", "")})
        return render(request, "loads/new.html", _new_context(request, form))
    form = NewLoadForm(request.POST, user=request.user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            load = create_load(
                request.user,
                data["folder"],
                data["target"],
                tables=data["tables"],
                schema_map=data["schema_map"],
                if_exists=data["if_exists"],
                parallel=data["parallel"],
                create_only=data["create_only"],
            )
        except BadRequest as error:
            # Next to the field it is about; the form keeps everything as it was typed.
            form.add_error(error.field if error.field in form.fields else None, str(error))
        else:
            start_load(load)
            tables = load.tables.count()
            messages.success(
                request, f"Load {load.pk} started: {tables} table(s) into '{load.target.name}'."
            )
            return redirect("load_detail", pk=load.pk)
    return render(request, "loads/new.html", _new_context(request, form))


def _new_context(request, form):
    recent = (
        ExportJob.objects.visible_to(request.user)
        .filter(status=ExportJob.Status.COMPLETE)
        .select_related("connection")
        .order_by("-created_at")[:RECENT_EXPORTS]
    )
    return {"form": form, "recent_exports": recent, "recent_exports_list": RECENT_EXPORTS_LIST}


@require_GET
def load_detail(request, pk):
    load = _load(request, pk)
    return render(request, "loads/detail.html", _detail_context(request, load))


@require_GET
def load_live(request, pk):
    load = _load(request, pk)
    return render(request, "loads/_load_live.html", _detail_context(request, load))


def _detail_context(request, load):
    tables = list(load.tables.all())
    unfinished = load.status not in Load.FINISHED
    actionable = Load.objects.actionable_by(request.user)
    return {
        "load": load,
        "tables": tables,
        "counts": load.counts(),
        "unfinished": unfinished,
        "may_cancel": unfinished and actionable.filter(pk=load.pk).exists(),
        "source_job": _source_job(request, load),
        "if_exists": Load.IfExists(load.option("if_exists")).label,
    }


def _source_job(request, load):
    """The export job the load came from, when it ran on this side and the user may see it:
    its id and its folder's name must both match (a job id from across the gap is
    another job here)."""
    if load.source_job_id is None:
        return None
    jobs = ExportJob.objects.visible_to(request.user)
    return jobs.filter(pk=load.source_job_id, output_dir=Path(load.folder).name).first()


@require_POST
def load_cancel(request, pk):
    load = get_object_or_404(Load.objects.actionable_by(request.user), pk=pk)
    load = cancel_load(load, by=request.user)
    # Said as it stands: "being cancelled" would outlive a load that stopped at once, and
    # a load that ended before the click was not cancelled at all.
    if load.status == Load.Status.CANCELLED:
        messages.success(request, f"Load {load.pk} cancelled.")
    elif load.status in Load.FINISHED:
        messages.error(request, f"Load {load.pk} had already ended: {load.get_status_display()}.")
    else:
        messages.success(request, f"Load {load.pk} is being cancelled.")
    return redirect("load_detail", pk=load.pk)
