"""What the load endpoints answer: a new load (queued, 201), the history and one load with
its tables and fingerprints (the object of `adu_load --json`), cancel; bad input is a 400
of one sentence naming the field, another user's load a 404, a viewer may not write.

Each test exports from a real source database and loads into a second, real database of
the same server (the target), in this process (loads.engine.run_load)."""

import json

import pytest
from django.contrib.auth.models import Group
from django_q.brokers import get_broker

from api.tests.helpers import error_of, post_json
from audit.models import AuditEvent
from loads.engine import run_load
from loads.management.commands.adu_load import load_data
from loads.models import Load, TableLoad

API = "/api/v1"


@pytest.fixture
def exported(source_db, owner, export):
    """A finished export of public.t (5 rows) that took the source's fingerprint."""
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    job = export(source_db.connection(owner), tables=["public.t"], fingerprint="on")
    assert job.status == "complete"
    return job


def new_load(client, headers, folder, target, **choices):
    return post_json(
        client, f"{API}/loads/", {"folder": str(folder), "target": target.pk, **choices}, **headers
    )


def as_json(data):
    return json.loads(json.dumps(data, default=str))


@pytest.mark.django_db(transaction=True)
def test_posting_a_load_queues_it_and_answers_201_with_the_load(
    client, owner, target, exported, bearer
):
    queue = get_broker()
    waiting = queue.queue_size()
    response = new_load(
        client,
        bearer(owner),
        exported.folder(),
        target,
        tables=["public.t"],
        schema_map={"public": "landed"},
        parallel=1,
    )
    assert response.status_code == 201, response.content
    created = response.json()
    load = Load.objects.get(pk=created["load_id"])
    assert response["Location"] == f"http://testserver{API}/loads/{load.pk}/"
    assert created == as_json(load_data(load))
    assert (created["status"], created["target"]) == ("queued", "far")
    assert created["source_job_id"] == exported.pk
    [table] = created["tables"]
    assert (table["schema"], table["table"], table["target"]) == ("public", "t", "landed.t")
    assert table["status"] == "queued"
    assert load.owner == owner and load.folder == str(exported.folder())
    assert load.options == {
        "schema_map": {"public": "landed"},
        "tables": ["public.t"],
        "if_exists": "fail",
        "parallel": 1,
        "create_only": False,
    }
    event = AuditEvent.objects.get(action="load_create", object_id=str(load.pk))
    assert event.username == "owner" and event.details["target"] == "far"
    assert queue.queue_size() == waiting + 1  # start_load queued its task


@pytest.mark.django_db(transaction=True)
def test_a_finished_load_in_the_history_and_in_detail(
    client, owner, target, target_db, exported, bearer
):
    headers = bearer(owner)
    first = new_load(client, headers, exported.folder(), target).json()["load_id"]
    assert run_load(first).status == Load.Status.VERIFIED
    assert target_db.execute("SELECT count(*), sum(i) FROM t") == [(5, 15)]

    detail = client.get(f"{API}/loads/{first}/", **headers)
    assert detail.status_code == 200, detail.content
    data = detail.json()
    assert data == as_json(load_data(Load.objects.get(pk=first)))
    assert data["status"] == "verified" and data["error"] == ""
    [table] = data["tables"]
    assert (table["status"], table["rows"], table["error"]) == ("verified", 5, "")
    fingerprint = table["file_fingerprint"]
    assert fingerprint["rows"] == 5 and len(fingerprint["digest"]) == 16
    assert table["target_fingerprint"] == table["source_fingerprint"] == fingerprint

    # The same export again, replacing: the history has both, newest first.
    second = new_load(client, headers, exported.folder(), target, if_exists="replace")
    assert second.status_code == 201, second.content
    second = second.json()["load_id"]

    def ids(query):
        response = client.get(f"{API}/loads/?{query}", **headers)
        assert response.status_code == 200, response.content
        return [load["id"] for load in response.json()["results"]]

    assert ids("") == [second, first]
    assert ids("status=verified") == [first]
    assert ids("status=queued") == [second]
    assert ids(f"target={target.pk}") == [second, first]
    assert ids(f"target={target.pk + 1000}") == []
    today = Load.objects.get(pk=first).created_at.date()
    assert ids(f"since={today}&until={today}") == [second, first]
    assert ids("until=2000-01-01") == []
    page = client.get(f"{API}/loads/?page_size=1", **headers).json()
    assert (page["count"], page["pages"], page["previous"]) == (2, 2, None)
    assert [load["id"] for load in page["results"]] == [second]
    following = client.get(page["next"], **headers).json()
    assert [load["id"] for load in following["results"]] == [first]
    assert following["next"] is None and following["previous"].endswith("page_size=1&page=1")
    summary = client.get(f"{API}/loads/?status=verified", **headers).json()["results"][0]
    assert summary["url"] == f"http://testserver{API}/loads/{first}/"
    assert (summary["target"], summary["target_name"], summary["owner"]) == (
        target.pk,
        "far",
        "owner",
    )
    assert summary["source_job_id"] == exported.pk
    assert summary["folder"] == str(exported.folder())
    assert (summary["tables_total"], summary["tables_done"], summary["tables_failed"]) == (1, 1, 0)
    assert summary["rows"] == 5 and summary["finished_at"] is not None


@pytest.mark.django_db(transaction=True)
def test_the_history_refuses_bad_filters_naming_them(client, owner, bearer):
    headers = bearer(owner)
    for query, field in [
        ("status=done", "status"),
        ("target=x", "target"),
        ("target=0", "target"),
        ("since=yesterday", "since"),
        ("page=0", "page"),
        ("page_size=1000", "page_size"),
    ]:
        response = client.get(f"{API}/loads/?{query}", **headers)
        assert response.status_code == 400, query
        error = error_of(response)
        assert (error["code"], error["field"]) == ("invalid_input", field), query


@pytest.mark.django_db(transaction=True)
def test_every_bad_load_gets_400_in_one_sentence_naming_the_field(
    client, owner, source_db, target, exported, bearer, settings, tmp_path
):
    headers = bearer(owner)
    folder = str(exported.folder())
    plain = source_db.connection(owner, name="plain")  # not marked as a load target
    settings.RECEIVE_ROOT.mkdir(parents=True)
    ok = {"folder": folder, "target": target.pk}
    cases = [
        # (body, field, words of the message)
        ({"target": target.pk}, "folder", "Field required"),
        ({**ok, "folder": "job-1"}, "folder", "must be an absolute path on the server"),
        ({**ok, "folder": "~/x"}, "folder", "must be an absolute path on the server"),
        ({**ok, "folder": "/tmp/a\x00b"}, "folder", "must be an absolute path on the server"),
        ({**ok, "folder": "/" + "a" * 1000}, "folder", "at most 1000 characters"),
        ({**ok, "folder": str(tmp_path)}, "folder", "is not under the receive root"),
        ({**ok, "folder": "/etc"}, "folder", "is not under the receive root"),
        (
            {**ok, "folder": str(settings.RECEIVE_ROOT / "nothing")},
            "folder",
            "There is no manifest.json in",
        ),
        (
            {**ok, "folder": str(settings.RECEIVE_ROOT / ("a" * 300))},
            "folder",
            "File name too long",
        ),
        (
            {**ok, "folder": str(exported.folder().parent / "job-999")},
            "folder",
            "There is no export of yours in",
        ),
        ({"folder": folder}, "target", "Field required"),
        ({**ok, "target": "far"}, "target", "valid integer"),
        ({**ok, "target": 0}, "target", "greater than or equal to 1"),
        ({**ok, "target": plain.pk}, "target", "'plain' is not marked as a load target"),
        ({**ok, "tables": ["public.nope"]}, "tables", "The export has no table public.nope."),
        ({**ok, "tables": ["t"]}, "tables.0", "must be SCHEMA.TABLE"),
        ({**ok, "tables": "public.t"}, "tables", "valid list"),
        ({**ok, "if_exists": "merge"}, "if_exists", "'fail', 'replace' or 'append'"),
        ({**ok, "parallel": 0}, "parallel", "greater than or equal to 1"),
        ({**ok, "parallel": 33}, "parallel", "less than or equal to 32"),
        ({**ok, "parallel": "two"}, "parallel", "valid integer"),
        ({**ok, "schema_map": {"nope": "x"}}, "schema_map", "names schema nope"),
        ({**ok, "schema_map": {"public": ""}}, "schema_map.public", "at least 1 character"),
        ({**ok, "schema_map": ["public=x"]}, "schema_map", "valid dictionary"),
        ({**ok, "create_only": "maybe"}, "create_only", "valid boolean"),
        ({**ok, "colour": "blue"}, "colour", "Extra inputs are not permitted"),
    ]
    queue = get_broker()
    waiting = queue.queue_size()
    for data, field, words in cases:
        response = post_json(client, f"{API}/loads/", data, **headers)
        assert response.status_code == 400, (data, response.content)
        error = error_of(response)  # the one shape, and no traceback
        assert (error["code"], error["field"]) == ("invalid_input", field), (data, error)
        assert words in error["message"], (data, error)
        assert "\n" not in error["message"], (data, error)
    not_json = client.post(f"{API}/loads/", "{folder", content_type="application/json", **headers)
    assert not_json.status_code == 400 and error_of(not_json)["field"] == "body"
    assert not Load.objects.exists()
    assert queue.queue_size() == waiting


@pytest.mark.django_db(transaction=True)
def test_the_same_export_twice_is_refused_naming_the_earlier_load(
    client, owner, target, exported, bearer
):
    headers = bearer(owner)
    first = new_load(client, headers, exported.folder(), target).json()["load_id"]
    run_load(first)
    again = new_load(client, headers, exported.folder(), target)
    assert again.status_code == 400
    error = error_of(again)
    assert error["field"] == "folder"
    assert "was loaded into 'far' on " in error["message"]
    assert f"as load {first} (verified" in error["message"]
    assert Load.objects.count() == 1
    # Into another schema of the target it is another load; appending, the same again.
    elsewhere = new_load(client, headers, exported.folder(), target, schema_map={"public": "b"})
    assert elsewhere.status_code == 201, elsewhere.content
    assert elsewhere.json()["tables"][0]["target"] == "b.t"
    appended = new_load(client, headers, exported.folder(), target, if_exists="append")
    assert appended.status_code == 201, appended.content


@pytest.mark.django_db(transaction=True)
def test_another_users_export_folder_and_target_are_refused(
    client, owner, outsider, target, target_db, exported, bearer
):
    headers = bearer(outsider)
    # The owner's target: as missing as one that does not exist.
    response = new_load(client, headers, exported.folder(), target)
    assert response.status_code == 404
    error = error_of(response)
    assert (error["code"], error["field"]) == ("not_found", "target")
    assert error["message"] == f"There is no connection {target.pk}."
    # The outsider's own target, but the owner's export.
    theirs = target_db.connection(outsider, name="theirs", is_target=True)
    response = new_load(client, headers, exported.folder(), theirs)
    assert response.status_code == 400
    assert error_of(response)["field"] == "folder"
    assert "There is no export of yours in" in error_of(response)["message"]
    assert not Load.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_another_users_load_is_a_404_like_a_missing_one(
    client, owner, outsider, target, exported, bearer
):
    load = new_load(client, bearer(owner), exported.folder(), target).json()["load_id"]
    headers = bearer(outsider)
    assert client.get(f"{API}/loads/", **headers).json()["results"] == []
    for method, url in [
        ("GET", f"{API}/loads/{load}/"),
        ("POST", f"{API}/loads/{load}/cancel/"),
        ("GET", f"{API}/loads/{load + 1000}/"),
    ]:
        response = client.generic(method, url, **headers)
        assert response.status_code == 404, url
        error = error_of(response)
        assert error["code"] == "not_found" and error["message"].startswith("There is no load ")
    missing = error_of(client.get(f"{API}/loads/{load + 1000}/", **headers))["message"]
    hidden = error_of(client.get(f"{API}/loads/{load}/", **headers))["message"]
    assert (missing, hidden) == (f"There is no load {load + 1000}.", f"There is no load {load}.")
    assert Load.objects.get(pk=load).status == Load.Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_cancel_own_load_then_409_once_ended(client, owner, target, exported, bearer):
    headers = bearer(owner)
    load = new_load(client, headers, exported.folder(), target).json()["load_id"]
    response = client.post(f"{API}/loads/{load}/cancel/", **headers)
    assert response.status_code == 202, response.content
    data = response.json()
    assert data == as_json(load_data(Load.objects.get(pk=load)))
    assert data["status"] == "cancelled"
    assert [t["status"] for t in data["tables"]] == [TableLoad.Status.CANCELLED]
    again = client.post(f"{API}/loads/{load}/cancel/", **headers)
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "invalid_state"
    assert error["message"] == (
        f"Load {load} has already ended (cancelled): there is nothing to cancel."
    )
    [event] = AuditEvent.objects.filter(action="load_cancel")
    assert (event.object_id, event.username) == (str(load), "owner")


@pytest.mark.django_db(transaction=True)
def test_a_viewer_sees_a_shared_load_but_may_neither_cancel_nor_create(
    client, owner, viewer, admin_user, target, exported, bearer
):
    analysts = Group.objects.create(name="analysts")
    owner.groups.add(analysts)
    viewer.groups.add(analysts)
    target.shared_with.add(analysts)
    load = new_load(client, bearer(owner), exported.folder(), target).json()["load_id"]
    headers = bearer(viewer)
    assert [r["id"] for r in client.get(f"{API}/loads/", **headers).json()["results"]] == [load]
    assert client.get(f"{API}/loads/{load}/", **headers).status_code == 200
    # Cancel: refused as for a job of a shared connection, a 404 (nothing to act on).
    refused = client.post(f"{API}/loads/{load}/cancel/", **headers)
    assert refused.status_code == 404 and error_of(refused)["code"] == "not_found"
    assert Load.objects.get(pk=load).status == Load.Status.QUEUED
    # Create: the role may not, whatever the body.
    response = new_load(client, headers, exported.folder(), target, if_exists="replace")
    assert response.status_code == 403
    error = error_of(response)
    assert (error["code"], error["message"]) == (
        "permission_denied",
        "Your role cannot start loads.",
    )
    assert Load.objects.count() == 1
    # An ADU Admin may cancel anyone's.
    cancelled = client.post(f"{API}/loads/{load}/cancel/", **bearer(admin_user))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert AuditEvent.objects.get(action="load_cancel").username == "root"


@pytest.mark.django_db(transaction=True)
def test_no_token_gets_401_and_a_wrong_method_405(client, owner, target, exported, bearer):
    load = new_load(client, bearer(owner), exported.folder(), target).json()["load_id"]
    endpoints = [
        ("GET", f"{API}/loads/"),
        ("POST", f"{API}/loads/"),
        ("GET", f"{API}/loads/{load}/"),
        ("POST", f"{API}/loads/{load}/cancel/"),
    ]
    for method, url in endpoints:
        response = client.generic(method, url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == 'Bearer realm="adu"'
        assert error_of(response)["code"] == "not_authenticated"
    headers = bearer(owner)
    for method, url in [("DELETE", f"{API}/loads/"), ("GET", f"{API}/loads/{load}/cancel/")]:
        response = client.generic(method, url, **headers)
        assert response.status_code == 405, url
        assert error_of(response)["code"] == "method_not_allowed"
    assert Load.objects.get(pk=load).status == Load.Status.QUEUED
