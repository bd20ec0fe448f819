"""The far side's receipts: what was received across the gap, and a load from each."""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_GET

from transfer.models import Receipt


@require_GET
def receipt_list(request):
    page = Paginator(Receipt.objects.select_related("received_by"), 25).get_page(
        request.GET.get("page")
    )
    return render(request, "transfer/receipts.html", {"page": page})
