"""What the job endpoints answer: history with filters and pages, one job as `adu_job
--json` shows it, errors, manifest and files, new jobs, cancel and retry."""

import io
import json

import pytest
from django.core.management import call_command
from django_q.brokers import get_broker

from api.tests.helpers import body, error_of, post_json
from audit.models import AuditEvent
from exports.models import ExportJob, TableRun

# Runs export jobs: `make test` runs it again on PostgreSQL metadata and the Redis broker.
pytestmark = pytest.mark.jobs
API = "/api/v1"


@pytest.mark.django_db(transaction=True)
def test_a_job_is_the_object_of_adu_job_json(client, owner, world, bearer):
    done = world["done"]
    response = client.get(f"{API}/jobs/{done.pk}/", **bearer(owner))
    out = io.StringIO()
    call_command("adu_job", str(done.pk), "--json", "--as", "owner", stdout=out)
    assert response.json() == json.loads(out.getvalue())
    assert response.json()["status"] == "complete_with_errors"


@pytest.mark.django_db(transaction=True)
def test_history_filters_by_status_connection_and_date_and_pages(client, owner, world, bearer):
    headers = bearer(owner)
    done, queued = world["done"], world["queued"]

    def ids(query):
        response = client.get(f"{API}/jobs/?{query}", **headers)
        assert response.status_code == 200, response.content
        return [job["id"] for job in response.json()["results"]]

    assert ids("") == [queued.pk, done.pk]
    assert ids("status=queued") == [queued.pk]
    assert ids("status=complete_with_errors") == [done.pk]
    assert ids(f"connection={world['connection'].pk}") == [queued.pk, done.pk]
    assert ids(f"connection={world['connection'].pk + 1}") == []
    today = done.created_at.date()
    assert ids(f"since={today}&until={today}") == [queued.pk, done.pk]
    assert ids("until=2000-01-01") == []
    first = client.get(f"{API}/jobs/?page_size=1&status=", **headers)
    assert first.status_code == 400  # an empty status is not a status
    first = client.get(f"{API}/jobs/?page_size=1", **headers).json()
    assert (first["count"], first["pages"], first["previous"]) == (2, 2, None)
    second = client.get(first["next"], **headers).json()
    assert [j["id"] for j in second["results"]] == [done.pk] and second["next"] is None
    assert second["previous"].endswith("page_size=1&page=1")
    summary = first["results"][0]
    assert summary["url"] == f"http://testserver{API}/jobs/{queued.pk}/"
    assert summary["connection_name"] == "warehouse" and summary["owner"] == "owner"


@pytest.mark.django_db(transaction=True)
def test_history_refuses_bad_filters_naming_them(client, owner, bearer):
    headers = bearer(owner)
    for query, field in [
        ("status=done", "status"),
        ("connection=x", "connection"),
        ("connection=0", "connection"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("page=0", "page"),
        ("page_size=1000", "page_size"),
    ]:
        response = client.get(f"{API}/jobs/?{query}", **headers)
        assert response.status_code == 400, query
        error = error_of(response)
        assert (error["code"], error["field"]) == ("invalid_input", field), query
        assert error["message"].startswith(f"{field}: "), query


@pytest.mark.django_db(transaction=True)
def test_errors_show_tracebacks_only_to_adu_admins(client, owner, admin_user, world, bearer):
    url = f"{API}/jobs/{world['done'].pk}/errors/"
    [error] = client.get(url, **bearer(owner)).json()
    assert error["table"] == "public.missing" and error["phase"] == "describe"
    assert "does not exist" in error["message"] and error["attempt"] == 1
    assert error["traceback"] is None
    [seen_by_admin] = client.get(url, **bearer(admin_user)).json()
    assert "Traceback" in seen_by_admin["traceback"]


@pytest.mark.django_db(transaction=True)
def test_manifest_and_files_stream_only_what_the_job_lists(client, owner, world, bearer):
    headers = bearer(owner)
    done = world["done"]
    manifest = client.get(f"{API}/jobs/{done.pk}/manifest/", **headers)
    assert manifest.streaming and manifest["Content-Type"] == "application/json"
    assert json.loads(body(manifest)) == json.loads(done.manifest_path().read_bytes())
    path = done.tables.get(table="t").files[0]["path"]
    download = client.get(f"{API}/jobs/{done.pk}/files/{path}", **headers)
    assert download.streaming and body(download) == (done.folder() / path).read_bytes()
    assert download["Content-Disposition"] == 'attachment; filename="t.parquet"'
    (done.folder() / "secret.txt").write_text("not listed")
    for guess in ["secret.txt", "public", "../../etc/passwd", "public/t.parquet.part"]:
        response = client.get(f"{API}/jobs/{done.pk}/files/{guess}", **headers)
        assert response.status_code == 404, guess
    queued = world["queued"]
    response = client.get(f"{API}/jobs/{queued.pk}/manifest/", **headers)
    assert response.status_code == 404 and "has not finished" in error_of(response)["message"]
    downloads = AuditEvent.objects.filter(action=AuditEvent.Action.FILE_DOWNLOAD)
    assert sorted(e.details["path"] for e in downloads) == ["manifest.json", path]
    assert {e.username for e in downloads} == {"owner"}


@pytest.mark.django_db(transaction=True)
def test_posting_a_job_queues_it_and_answers_202_with_its_url(client, owner, world, bearer):
    data = {
        "connection": world["connection"].pk,
        "tables": ["public.t"],
        "options": {"parallel": 1, "validation": "full"},
        "out": "nightly",
    }
    queue = get_broker()
    waiting = queue.queue_size()
    response = post_json(client, f"{API}/jobs/", data, **bearer(owner))
    assert response.status_code == 202, response.content
    created = response.json()
    job = ExportJob.objects.get(pk=created["id"])
    assert response["Location"] == created["url"] == f"http://testserver{API}/jobs/{job.pk}/"
    assert (created["status"], created["tables"]) == ("queued", 1)
    assert job.owner == owner and job.output_dir == "nightly"
    assert job.option("parallel") == 1 and job.option("validation") == "full"
    assert AuditEvent.objects.filter(action="job_create", object_id=str(job.pk)).exists()
    assert queue.queue_size() == waiting + 1  # start_job queued its coordinator


@pytest.mark.django_db(transaction=True)
def test_posting_schemas_exports_their_tables(client, owner, world, bearer):
    data = {"connection": world["connection"].pk, "schemas": ["public"]}
    response = post_json(client, f"{API}/jobs/", data, **bearer(owner))
    assert response.status_code == 202
    job = ExportJob.objects.get(pk=response.json()["id"])
    assert list(job.tables.values_list("schema", "table")) == [("public", "t")]


@pytest.mark.django_db(transaction=True)
def test_a_bad_new_job_gets_400_naming_the_field(client, owner, world, bearer, export_root):
    headers = bearer(owner)
    pk = world["connection"].pk
    (export_root / "taken").mkdir(parents=True)
    (export_root / "taken" / "f").write_text("x")
    cases = [
        ({"tables": ["public.t"]}, "connection"),
        ({"connection": "warehouse", "tables": ["public.t"]}, "connection"),
        ({"connection": pk, "tables": ["t"]}, "tables.0"),
        ({"connection": pk, "tables": "public.t"}, "tables"),
        ({"connection": pk, "tables": ["public.t"], "options": {"parallel": 0}}, "options.parallel"),
        ({"connection": pk, "tables": ["public.t"], "options": {"validation": "all"}}, "options.validation"),
        ({"connection": pk, "tables": ["public.t"], "options": {"speed": 3}}, "options.speed"),
        ({"connection": pk, "tables": ["public.t"], "colour": "blue"}, "colour"),
        ({"connection": pk, "tables": ["public.t"], "out": "../up"}, "out"),
        ({"connection": pk, "tables": ["public.t"], "out": "taken"}, "out"),
        ({"connection": pk, "schemas": ["nothing_here"]}, "schemas"),
        ({"connection": pk, "tables": ["public.t"], "exclude": ["public.t"]}, "tables"),
    ]  # fmt: skip
    for data, field in cases:
        response = post_json(client, f"{API}/jobs/", data, **headers)
        assert response.status_code == 400, (data, response.content)
        assert error_of(response)["field"] == field, (data, response.content)
    not_json = client.post(f"{API}/jobs/", "{tables", content_type="application/json", **headers)
    assert not_json.status_code == 400 and error_of(not_json)["field"] == "body"
    assert ExportJob.objects.count() == 2  # the world's two; nothing new


@pytest.mark.django_db(transaction=True)
def test_a_new_job_on_someone_elses_connection_is_404(client, outsider, world, bearer):
    data = {"connection": world["connection"].pk, "tables": ["public.t"]}
    response = post_json(client, f"{API}/jobs/", data, **bearer(outsider))
    assert response.status_code == 404
    assert error_of(response)["field"] == "connection"


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_source_is_a_502_in_one_sentence(client, owner, source_db, bearer):
    connection = source_db.connection(owner, port=1, password="Secret-Pw-123")
    headers = bearer(owner)
    for response in [
        post_json(client, f"{API}/jobs/", {"connection": connection.pk}, **headers),
        client.get(f"{API}/connections/{connection.pk}/schemas/", **headers),
        client.get(f"{API}/connections/{connection.pk}/tables/", **headers),
    ]:
        assert response.status_code == 502
        error = error_of(response)
        assert error["code"] == "source_unavailable" and "Secret-Pw-123" not in error["message"]


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_answer_409_when_the_state_forbids_them(client, owner, world, bearer):
    headers = bearer(owner)
    done, queued = world["done"], world["queued"]
    for url, words in [
        (f"{API}/jobs/{done.pk}/cancel/", "nothing to cancel"),
        (f"{API}/jobs/{queued.pk}/retry/", "when it has finished"),
    ]:
        response = client.post(url, **headers)
        assert response.status_code == 409, url
        error = error_of(response)
        assert error["code"] == "invalid_state" and words in error["message"]
    cancelled = client.post(f"{API}/jobs/{queued.pk}/cancel/", **headers)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    retried = client.post(f"{API}/jobs/{done.pk}/retry/", **headers)
    assert retried.status_code == 202
    assert (retried.json()["status"], retried.json()["attempt"]) == ("queued", 2)
    assert done.tables.get(table="missing").status == TableRun.Status.QUEUED
    # Running again: no second retry, and a job with nothing failed has nothing to retry.
    assert client.post(f"{API}/jobs/{done.pk}/retry/", **headers).status_code == 409
    actions = AuditEvent.objects.filter(action__in=["job_cancel", "job_retry"])
    assert sorted(actions.values_list("action", flat=True)) == ["job_cancel", "job_retry"]


@pytest.mark.django_db(transaction=True)
def test_a_complete_job_has_nothing_to_retry(client, owner, source_db, export, bearer):
    source_db.execute("CREATE TABLE t AS SELECT 1 AS i")
    job = export(source_db.connection(owner), tables=["public.t"])
    response = client.post(f"{API}/jobs/{job.pk}/retry/", **bearer(owner))
    assert response.status_code == 409
    assert "no failed or cancelled tables" in error_of(response)["message"]


@pytest.mark.django_db(transaction=True)
def test_a_new_job_takes_columns_filters_masks_and_saved_queries(client, owner, source_db, bearer):
    from connections.models import SavedQuery
    from exports.engine.run import run_job

    source_db.execute(
        "CREATE TABLE people AS SELECT i AS id, 'name ' || i AS name, i * 10 AS salary "
        "FROM generate_series(1, 6) AS i"
    )
    connection = source_db.connection(owner)
    SavedQuery.objects.create(connection=connection, name="top", sql="SELECT 1 AS one")
    data = {
        "connection": connection.pk,
        "tables": ["public.people"],
        "selections": {
            "public.people": {
                "exclude": ["salary"],
                "filter": "id <= 3",
                "masks": {"name": {"method": "hash"}},
            }
        },
        "queries": ["top"],
        "options": {"masking_key": "job"},
    }
    response = post_json(client, f"{API}/jobs/", data, **bearer(owner))
    assert response.status_code == 202, response.content
    job = run_job(response.json()["id"])
    assert job.status == "complete"
    people = job.tables.get(table="people")
    assert people.rows_written == 3 and [c["name"] for c in people.columns] == ["id", "name"]
    assert job.tables.get(schema="queries", table="top").rows_written == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_selection_gets_400_naming_the_field(client, owner, source_db, bearer):
    source_db.execute("CREATE TABLE t AS SELECT 1 AS i")
    pk = source_db.connection(owner).pk
    headers = bearer(owner)
    cases = [
        ({"selections": {"public.t": {"columns": ["nope"]}}}, "selections"),
        ({"selections": {"public.t": {"filter": "i >"}}}, "selections"),
        ({"selections": {"public.other": {"columns": ["i"]}}}, "selections"),
        ({"selections": {"public.t": {"masks": {"i": {"method": "blur"}}}}}, "selections.public.t.masks.i.method"),
        ({"queries": ["missing"]}, "queries"),
        ({"allow_sensitive": ["*"]}, "allow_sensitive"),
    ]  # fmt: skip
    for extra, field in cases:
        response = post_json(
            client, f"{API}/jobs/", {"connection": pk, "tables": ["public.t"], **extra}, **headers
        )
        assert response.status_code == 400, (extra, response.content)
        assert error_of(response)["field"] == field, (extra, response.content)


@pytest.mark.django_db(transaction=True)
def test_null_options_take_the_defaults_and_open_no_way_to_the_site_key(
    client, owner, world, bearer
):
    """null is documented as "the default": it must never mean a stronger choice (the
    site's hash key is for ADU Admins only), nor reach the engine as None."""
    data = {
        "connection": world["connection"].pk,
        "tables": ["public.t"],
        "options": {"masking_key": None, "parallel": None, "validation": None},
    }
    response = post_json(client, f"{API}/jobs/", data, **bearer(owner))
    assert response.status_code == 202, response.content
    job = ExportJob.objects.get(pk=response.json()["id"])
    assert job.option("masking_key") == "connection"
    assert (job.option("parallel"), job.option("validation")) == (2, "sample")
    refused = post_json(
        client, f"{API}/jobs/", {**data, "options": {"masking_key": "site"}}, **bearer(owner)
    )
    assert refused.status_code == 400
    assert error_of(refused)["field"] == "options.masking_key"
