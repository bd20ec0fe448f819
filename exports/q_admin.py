"""Django-Q2's admin pages, for superusers only, and scheduling only ADU's own tasks.

A schedule names a function by its dotted path, and the cluster imports and calls it: left
as Django-Q2 registers it, the Schedule admin would let anyone with the admin's
permissions (every ADU Admin) run `os.system` or `subprocess.run` on the workers. So its
pages, and those of tasks and the ORM queue, are a superuser's, and a schedule (hook and
task options included) can only call one of TASKS. Imported by exports.admin, after
django_q's own admin module has registered its classes (django_q comes first in
INSTALLED_APPS).
"""

import ast
import inspect

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.utils.module_loading import import_string
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success

# ADU's task functions (exports, loads, transfer and plans tasks): all a schedule or a
# resubmitted task may call.
TASKS = frozenset(
    {
        "exports.tasks.sweep",
        "exports.tasks.coordinate",
        "exports.tasks.work",
        "loads.tasks.run",
        "transfer.tasks.run",
        "plans.tasks.run_due",
        "plans.tasks.run",
        "plans.tasks.deliver",
    }
)


def task_refused(func: str) -> str:
    """Why `func` may not be scheduled, in one sentence; '' if it may."""
    if func in TASKS:
        return ""
    return f"'{func[:100]}' is not one of ADU's tasks: choose one of {', '.join(sorted(TASKS))}."


class SuperuserOnly:
    """Only a superuser sees or touches these pages; an ADU Admin who is not one gets a
    403, and the models do not appear on the admin's index."""

    @staticmethod
    def _superuser(request) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request):
        return self._superuser(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._superuser(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._superuser(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._superuser(request) and super().has_delete_permission(request, obj)


def _keyword_names(text: str) -> list[str] | None:
    """The keyword names of a schedule's kwargs, read as Django-Q2's scheduler reads them
    (a dict literal, or `x=1, y=2`); None if it would not read them."""
    try:
        value = ast.literal_eval(text)
        return list(value) if isinstance(value, dict) else None
    except (SyntaxError, ValueError):
        pass
    try:
        keywords = ast.parse(f"f({text})").body[0].value.keywords
        for keyword in keywords:
            ast.literal_eval(keyword.value)
    except (SyntaxError, ValueError, AttributeError, IndexError):
        return None
    names = [keyword.arg for keyword in keywords]
    return None if None in names else names  # `**x` is not a keyword


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = [
            "name",
            "func",
            "hook",
            "args",
            "kwargs",
            "schedule_type",
            "minutes",
            "repeats",
            "next_run",
            "cron",
            "cluster",
            "intended_date_kwarg",
        ]

    def clean_func(self):
        func = (self.cleaned_data.get("func") or "").strip()
        refused = task_refused(func)
        if refused:
            raise forms.ValidationError(refused)
        return func

    def clean_hook(self):
        if self.cleaned_data.get("hook"):
            raise forms.ValidationError("ADU's schedules take no hook: leave it empty.")
        return None

    def clean_args(self):
        args = self.cleaned_data.get("args")
        if args:
            try:
                ast.literal_eval(args)
            except (SyntaxError, ValueError):
                raise forms.ValidationError("Arguments must be Python literals: 1, 'a'.") from None
        return args

    def clean(self):
        cleaned = super().clean()
        func, kwargs = cleaned.get("func"), cleaned.get("kwargs")
        if func and kwargs:
            names = _keyword_names(kwargs)
            # Only the task's own parameters: no q_options, hook, chain... (Django-Q2's
            # options, which could call other functions).
            allowed = set(inspect.signature(import_string(func)).parameters)
            if names is None:
                self.add_error("kwargs", "Keyword arguments must be name=literal pairs.")
            elif set(names) - allowed:
                self.add_error(
                    "kwargs",
                    f"{func} takes no keyword argument {', '.join(sorted(set(names) - allowed))}.",
                )
        return cleaned


class ScheduleAdmin(SuperuserOnly, q_admin.ScheduleAdmin):
    form = ScheduleForm

    def save_model(self, request, obj, form, change):
        # The form refused it already; never save one that slipped past it.
        if task_refused(obj.func) or obj.hook:
            raise PermissionDenied(task_refused(obj.func) or "ADU's schedules take no hook.")
        super().save_model(request, obj, form, change)


@admin.action(description="Resubmit selected tasks to queue (ADU's tasks only)")
def resubmit_adu_tasks(model_admin, request, queryset):
    allowed = [task.pk for task in queryset if not task_refused(task.func) and not task.hook]
    q_admin.resubmit_task(model_admin, request, queryset.filter(pk__in=allowed))


class TaskAdmin(SuperuserOnly, q_admin.TaskAdmin):
    actions = [resubmit_adu_tasks]


class FailAdmin(SuperuserOnly, q_admin.FailAdmin):
    actions = [resubmit_adu_tasks]


class QueueAdmin(SuperuserOnly, q_admin.QueueAdmin):
    pass


def register(site=admin.site):
    """Replace Django-Q2's registrations with the classes above."""
    for model, model_admin in (
        (Schedule, ScheduleAdmin),
        (Success, TaskAdmin),
        (Failure, FailAdmin),
        (OrmQ, QueueAdmin),
    ):
        if site.is_registered(model):
            site.unregister(model)
            site.register(model, model_admin)
