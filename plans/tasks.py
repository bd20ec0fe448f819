"""Django-Q2 tasks of plans: ids only as arguments."""


def run_due():
    from plans import runs

    runs.run_due()


def run(plan_id: int):
    from plans import runs
    from plans.models import ExportPlan

    runs.run_plan(ExportPlan.objects.get(pk=plan_id), trigger="manual")


def deliver(delivery_id: int):
    from plans import notify

    notify.deliver(delivery_id)
