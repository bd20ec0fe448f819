"""Portal pages of export plans: the list, a plan with its history, a new plan."""

import secrets

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from plans import runs
from plans.forms import PlanForm
from plans.models import ExportPlan, PlanRefused


@require_GET
def plan_list(request):
    plans = ExportPlan.objects.visible_to(request.user).select_related("connection")
    return render(request, "plans/list.html", {"plans": [(p, p.runs.first()) for p in plans]})


def _plan(request, pk) -> ExportPlan:
    return get_object_or_404(ExportPlan.objects.visible_to(request.user), pk=pk)


def history_context(plan: ExportPlan) -> dict:
    history = list(plan.runs.select_related("job")[:50])
    return {
        "plan": plan,
        "history": history,
        "running": any(r.job and not r.job.is_finished for r in history),
    }


@require_GET
def plan_detail(request, pk):
    plan = _plan(request, pk)
    context = history_context(plan)
    context["notifications"] = plan.notifications.all()
    context["can_change"] = ExportPlan.objects.actionable_by(request.user).filter(pk=pk).exists()
    return render(request, "plans/detail.html", context)


@require_GET
def plan_history(request, pk):
    """A plan's runs alone: polled while one of its jobs is at work."""
    return render(request, "plans/_history.html", history_context(_plan(request, pk)))


@require_POST
def plan_action(request, pk, action):
    plan = _plan(request, pk)
    if not ExportPlan.objects.actionable_by(request.user).filter(pk=pk).exists():
        raise PermissionDenied("Your role cannot run or change this plan.")
    if action == "run":
        run = runs.run_plan(plan, trigger="manual", by=request.user)
        said = {
            "started": f"Started job {run.job_id}.",
            "skipped": f"Not started: {run.note}",
            "refused": f"Not started: {run.note}",
        }[run.outcome]
        (messages.success if run.outcome == "started" else messages.error)(request, said)
    elif action in ("pause", "resume"):
        plan.set_paused(action == "pause", by=request.user)
        messages.success(request, f"Plan {plan.name} {'paused' if plan.paused else 'resumed'}.")
    elif action == "remove":
        plan.remove(by=request.user)
        messages.success(request, f"Removed plan {plan.name}; its jobs stay.")
        return redirect("plan_list")
    else:
        raise Http404(f"A plan has no action '{action}'.")
    return redirect("plan_detail", pk=plan.pk)


@require_http_methods(["GET", "POST"])
def plan_new(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot save plans.")
    form = PlanForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        fields = form.plan_fields()
        secret = secrets.token_urlsafe(32) if form.cleaned_data["webhook"] else ""
        notify = [("email", address, "") for address in form.emails()]
        if secret:
            notify.append(("webhook", form.cleaned_data["webhook"], secret))
        try:
            plan = ExportPlan.create(
                owner=request.user,
                notify=notify,
                notify_on=fields.pop("notify_on"),
                **fields,
            )
        except PlanRefused as error:
            # The form keeps what was typed; the sentence sits by its field.
            field = error.field if error.field in form.fields else None
            form.add_error(field, str(error))
        else:
            messages.success(request, f"Saved plan {plan.name}.")
            if secret:
                messages.warning(
                    request,
                    f"The webhook's signing secret, shown only now: {secret} (each POST carries "
                    "X-ADU-Signature: sha256=HMAC-SHA-256 of its body with it).",
                )
            return redirect("plan_detail", pk=plan.pk)
    return render(request, "plans/new.html", {"form": form})
