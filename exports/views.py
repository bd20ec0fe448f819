from django.shortcuts import render

from exports.models import ExportJob


def dashboard(request):
    jobs = ExportJob.objects.select_related("connection")
    if not request.user.is_staff:
        jobs = jobs.filter(owner=request.user)
    return render(request, "exports/dashboard.html", {"jobs": jobs[:10]})
