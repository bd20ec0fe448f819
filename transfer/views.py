"""Portal pages of transfers: a job's bundles ("Prepare transfer") on the exporting side,
and the receipts on the far side, each with a load to start from it."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from exports.models import ExportJob, JobStateError
from transfer.bundle import BundleRefused
from transfer.models import Bundle, Receipt
from transfer.tasks import create_bundle, start_bundle


def _job(request, pk) -> ExportJob:
    # A job the user may not see is a 404, never a 403 that confirms it exists.
    return get_object_or_404(ExportJob.objects.visible_to(request.user), pk=pk)


def bundles_context(job: ExportJob) -> dict:
    bundles = list(job.bundles.all())
    return {
        "job": job,
        "bundles": bundles,
        "bundling": any(b.status not in Bundle.FINISHED for b in bundles),
    }


@require_POST
def bundle_new(request, pk):
    job = _job(request, pk)
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot prepare transfers.")
    try:
        bundle = create_bundle(
            request.user,
            job,
            request.POST.get("volume_size", "").strip() or "4G",
            request.POST.get("encrypt_to", ""),
        )
    except (BundleRefused, JobStateError) as error:
        messages.error(request, str(error))
    else:
        start_bundle(bundle)
        messages.success(
            request, f"Bundle {bundle.pk} queued: its volumes go to {bundle.folder()}."
        )
    return redirect("job_detail", pk=job.pk)


@require_GET
def bundle_rows(request, pk):
    """A job's bundles alone: polled while one of them has not finished."""
    return render(request, "transfer/_bundles.html", bundles_context(_job(request, pk)))


@require_GET
def receipt_list(request):
    page = Paginator(Receipt.objects.select_related("received_by"), 25).get_page(
        request.GET.get("page")
    )
    return render(request, "transfer/receipts.html", {"page": page})
