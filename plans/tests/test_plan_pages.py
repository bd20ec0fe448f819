"""The portal's plan pages: a new plan (its refusals keep what was typed), run now (twice:
the second is skipped while the first job runs), pause and resume, and who may see and do
what."""

import pytest

from audit.models import AuditEvent
from exports.models import ExportJob
from plans.models import ExportPlan, PlanRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connection(source_db, owner):
    source_db.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    return source_db.connection(owner)


def form(connection, **changes):
    fields = {
        "name": "nightly",
        "connection": connection.pk,
        "tables": "public.t",
        "incremental": "public.t",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "folder_pattern": "{plan}-{date}",
        "email": "dba@example.org",
        "webhook": "https://hooks.example.org/adu",
        "notify_on": "problems",
    }
    return {**fields, **changes}


def test_a_refused_plan_keeps_what_was_typed_and_says_why_by_its_field(client, owner, connection):
    client.force_login(owner)
    page = client.post(
        "/plans/new/", form(connection, cron="0 25 * * *", email="a@b.org")
    ).content.decode()
    assert "is not a cron expression of five fields" in page
    assert (
        'value="0 25 * * *"' in page and 'value="a@b.org"' in page and "public.t</textarea>" in page
    )
    assert not ExportPlan.objects.exists()
    page = client.post("/plans/new/", form(connection, cron="", every_minutes="")).content.decode()
    assert "not both and not neither" in page
    page = client.post("/plans/new/", form(connection, timezone="Nowhere/City")).content.decode()
    assert "is not a time zone" in page
    assert not ExportPlan.objects.exists()


def test_a_plan_made_run_and_paused_from_the_portal(client, owner, connection):
    client.force_login(owner)
    saved = client.post("/plans/new/", form(connection), follow=True).content.decode()
    plan = ExportPlan.objects.get()
    secret = str(plan.notifications.get(channel="webhook").secret)
    assert "Saved plan nightly" in saved and secret in saved  # shown once
    assert secret not in client.get(f"/plans/{plan.pk}/").content.decode()
    assert "cron &#x27;0 2 * * *&#x27; (Europe/Paris)" in saved or "cron '0 2 * * *'" in saved

    started = client.post(f"/plans/{plan.pk}/run/", follow=True).content.decode()
    job = ExportJob.objects.get()
    assert f"Started job {job.pk}." in started and job.output_dir.startswith("nightly-")
    assert 'hx-trigger="every 2s"' in started  # the history polls while the job runs
    again = client.post(f"/plans/{plan.pk}/run/", follow=True).content.decode()
    assert f"Not started: Job {job.pk} of the last run is still queued." in again
    assert list(plan.runs.values_list("outcome", flat=True)) == ["skipped", "started"]
    ExportJob.objects.filter(pk=job.pk).update(status="complete")
    history = client.get(f"/plans/{plan.pk}/history/").content.decode()
    assert "hx-trigger" not in history and "Complete" in history

    assert client.post(f"/plans/{plan.pk}/drop/").status_code == 404  # no action by a typo
    assert ExportPlan.objects.filter(pk=plan.pk).exists()
    client.post(f"/plans/{plan.pk}/pause/")
    plan.refresh_from_db()
    assert plan.paused and plan.next_run_at is None
    listed = client.get("/plans/").content.decode()
    assert "nightly" in listed and "paused" in listed
    client.post(f"/plans/{plan.pk}/resume/")
    plan.refresh_from_db()
    assert not plan.paused and plan.next_run_at is not None
    assert AuditEvent.objects.filter(action="plan_update").count() == 2


def test_others_cannot_see_or_run_a_plan(client, owner, outsider, viewer, connection):
    plan = ExportPlan.create(
        name="p",
        owner=owner,
        connection=connection,
        every_minutes=60,
        definition={"tables": ["public.t"]},
    )
    client.force_login(outsider)
    assert client.get(f"/plans/{plan.pk}/").status_code == 404
    assert client.post(f"/plans/{plan.pk}/run/").status_code == 404
    assert "No plans yet" in client.get("/plans/").content.decode()
    client.force_login(viewer)
    assert client.get("/plans/new/").status_code == 403
    assert not PlanRun.objects.exists()


def test_the_admin_refuses_a_bad_plan_and_gives_a_new_webhook_its_secret_once(
    client, admin_user, owner, connection
):
    client.force_login(admin_user)
    fields = {
        "name": "adm", "owner": owner.pk, "connection": connection.pk, "definition": "{}",
        "incremental": "[]", "watermarks": "{}", "folder_pattern": "{plan}-{date}",
        "cron": "every day", "every_minutes": "", "timezone": "UTC",
        "notifications-TOTAL_FORMS": "0", "notifications-INITIAL_FORMS": "0",
    }  # fmt: skip
    page = client.post("/admin/plans/exportplan/add/", fields).content.decode()
    assert "is not a cron expression" in page and not ExportPlan.objects.exists()
    client.post("/admin/plans/exportplan/add/", {**fields, "cron": "0 3 * * *"})
    plan = ExportPlan.objects.get()
    assert plan.next_run_at is not None

    added = client.post(
        "/admin/plans/notification/add/",
        {
            "user": owner.pk,
            "channel": "webhook",
            "address": "https://h.example.org/",
            "when": "always",
        },
        follow=True,
    ).content.decode()
    secret = str(plan.notifications.model.objects.get().secret)
    assert len(secret) > 30 and secret in added
    assert secret not in client.get("/admin/plans/notification/").content.decode()
