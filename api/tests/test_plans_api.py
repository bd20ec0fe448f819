"""Export plans through the API: saved (the webhook's secret shown once), refused with the
field named, run (then skipped with a 409 while its job runs), paused, removed; others see
nothing and viewers change nothing."""

import pytest

from api.tests.helpers import error_of
from plans.models import ExportPlan, PlanRun

pytestmark = pytest.mark.django_db(transaction=True)
API = "/api/v1"


def body(connection, **changes):
    plan = {
        "name": "nightly",
        "connection": connection.pk,
        "tables": ["public.t"],
        "incremental": ["public.t"],
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "notify": [
            {"channel": "webhook", "address": "https://hooks.example.org/adu", "when": "always"}
        ],
    }
    return {**plan, **changes}


def test_a_plan_saved_run_paused_and_removed(client, owner, world, bearer):
    auth = bearer(owner)
    created = client.post(
        f"{API}/plans/", body(world["connection"]), content_type="application/json", **auth
    )
    assert created.status_code == 201, created.content
    plan = created.json()
    [(url, secret)] = plan["webhook_secrets"].items()
    assert url == "https://hooks.example.org/adu" and len(secret) > 30
    shown = client.get(f"{API}/plans/{plan['id']}/", **auth).json()
    assert secret not in str(shown) and shown["notify"][0]["when"] == "always"
    assert shown["next_run_at"].endswith("+00:00") and shown["incremental"] == ["public.t"]

    run = client.post(f"{API}/plans/{plan['id']}/run/", **auth)
    assert run.status_code == 202 and run.json()["outcome"] == "started"
    again = client.post(f"{API}/plans/{plan['id']}/run/", **auth)
    assert again.status_code == 409 and "is still queued" in error_of(again)["message"]
    history = client.get(f"{API}/plans/{plan['id']}/", **auth).json()["history"]
    assert [h["outcome"] for h in history] == ["skipped", "started"]

    paused = client.post(f"{API}/plans/{plan['id']}/pause/", **auth).json()
    assert paused["paused"] and paused["next_run_at"] is None
    assert client.post(f"{API}/plans/{plan['id']}/stop/", **auth).status_code in (400, 404, 422)
    assert client.delete(f"{API}/plans/{plan['id']}/", **auth).status_code == 204
    assert not ExportPlan.objects.exists() and not PlanRun.objects.exists()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"cron": "0 2 * *"}, "cron"),
        ({"cron": "", "every_minutes": None}, "cron"),
        ({"timezone": "Atlantis/Capital"}, "timezone"),
        ({"folder_pattern": "{nothing}"}, "folder_pattern"),
        ({"notify": [{"channel": "email", "address": "not-an-address"}]}, "email"),
        ({"options": {"parallel": 0}}, None),
    ],
)
def test_a_bad_plan_is_a_400_naming_its_field(client, owner, world, bearer, changes, field):
    response = client.post(
        f"{API}/plans/",
        body(world["connection"], **changes),
        content_type="application/json",
        **bearer(owner),
    )
    assert response.status_code == 400, response.content
    if field:
        assert error_of(response)["field"] == field
    assert not ExportPlan.objects.exists()


def test_others_see_no_plan_and_viewers_change_none(client, owner, outsider, viewer, world, bearer):
    plan = ExportPlan.create(
        name="p", owner=owner, connection=world["connection"], every_minutes=5,
        definition={"tables": ["public.t"]},
    )  # fmt: skip
    assert client.get(f"{API}/plans/{plan.pk}/", **bearer(outsider)).status_code == 404
    assert client.get(f"{API}/plans/", **bearer(outsider)).json() == []
    assert client.post(f"{API}/plans/{plan.pk}/run/", **bearer(outsider)).status_code == 404
    created = client.post(
        f"{API}/plans/",
        body(world["connection"], name="v"),
        content_type="application/json",
        **bearer(viewer),
    )
    assert created.status_code == 403
    assert not PlanRun.objects.exists()
    # Another user's ids: their connection for a plan of one's own, their plan to change.
    taken = client.post(
        f"{API}/plans/",
        body(world["connection"], name="mine"),
        content_type="application/json",
        **bearer(outsider),
    )
    assert taken.status_code in (400, 404) and "Traceback" not in taken.content.decode()
    assert not ExportPlan.objects.filter(name="mine").exists()
    for action in ("pause", "resume"):
        assert (
            client.post(f"{API}/plans/{plan.pk}/{action}/", **bearer(outsider)).status_code == 404
        )
    assert client.delete(f"{API}/plans/{plan.pk}/", **bearer(outsider)).status_code == 404
    plan.refresh_from_db()
    assert not plan.paused
