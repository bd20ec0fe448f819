"""Bundles from the portal ("Prepare transfer" on a finished job) and the API, made by the
cluster's task (transfer.tasks.run, called here in this process); the receipts page and
endpoint; a bundle whose worker died fails rather than running forever."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.brokers import get_broker

from api.tests.helpers import error_of, post_json
from transfer import age, keys
from transfer.models import Bundle, Receipt
from transfer.receive import receive
from transfer.tasks import run, sweep_bundles

pytestmark = pytest.mark.django_db(transaction=True)
API = "/api/v1"


@pytest.fixture
def job(source_db, owner, export):
    source_db.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) AS m FROM generate_series(1, 500) i"
    )
    done = export(source_db.connection(owner), tables=["public.t"])
    assert done.status == "complete"
    return done


@pytest.fixture
def bundle_root(tmp_path, settings):
    settings.BUNDLE_ROOT = tmp_path / "bundles"
    return settings.BUNDLE_ROOT


def test_prepare_transfer_on_a_job_page_makes_a_bundle_the_far_side_receives(
    client, owner, job, bundle_root, tmp_path
):
    far = age.Identity.generate()
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="prepare-transfer"' in page
    queued = get_broker().queue_size()
    response = client.post(
        f"/transfer/jobs/{job.pk}/bundles/",
        {"volume_size": "64K", "encrypt_to": str(far.to_public())},
        follow=True,
    )
    assert "Bundle " in response.content.decode() and "queued" in response.content.decode()
    assert get_broker().queue_size() == queued + 1  # on the cluster, by id
    bundle = Bundle.objects.get()
    assert bundle.status == Bundle.Status.QUEUED and bundle.recipient == str(far.to_public())
    run(bundle.pk)
    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.DONE, bundle.error
    assert bundle.volumes >= 1 and bundle.bytes > 0
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'data-bundle="{bundle.pk}"' in page and bundle.name in page and "(encrypted)" in page
    assert "hx-trigger" not in page.split('id="bundles"')[1].split(">")[0]  # done: no polling

    trusted = [keys.TrustedKey("near.pem", keys.signing_key().public_key())]
    from django.test import override_settings

    with override_settings(AGE_IDENTITY=str(far)):
        [index] = bundle.folder().glob("*.index.json")
        received = receive(index, trusted, owner)
    assert received.new
    receipts = client.get("/transfer/receipts/").content.decode()
    assert bundle.name in receipts
    assert f"/loads/new/?folder={received.receipt.folder}" in receipts


def test_a_bad_volume_size_or_recipient_is_one_sentence_and_nothing_is_queued(
    client, owner, job, bundle_root
):
    client.force_login(owner)
    for data, said in (
        ({"volume_size": "lots"}, "is not a size"),
        ({"volume_size": "4G", "encrypt_to": "age1nope"}, "not an age public key"),
    ):
        page = client.post(f"/transfer/jobs/{job.pk}/bundles/", data, follow=True)
        assert said in page.content.decode()
    assert Bundle.objects.count() == 0


def test_a_viewer_may_not_and_an_outsider_sees_no_such_job(client, viewer, outsider, job):
    client.force_login(viewer)
    assert client.post(f"/transfer/jobs/{job.pk}/bundles/", {"volume_size": "4G"}).status_code in (
        403,
        404,
    )
    client.force_login(outsider)
    assert (
        client.post(f"/transfer/jobs/{job.pk}/bundles/", {"volume_size": "4G"}).status_code == 404
    )
    assert client.get(f"/transfer/jobs/{job.pk}/bundles/rows/").status_code == 404
    assert Bundle.objects.count() == 0


def test_the_api_queues_a_bundle_and_lists_it(client, owner, job, bundle_root):
    from api.models import ApiToken

    bearer = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(owner, 'bundles')[1]}"}
    response = post_json(client, f"{API}/jobs/{job.pk}/bundles/", {"volume_size": "1M"}, **bearer)
    assert response.status_code == 202, response.content
    made = response.json()
    assert made["status"] == "queued" and made["encrypted"] is False
    run(made["id"])
    [listed] = client.get(f"{API}/jobs/{job.pk}/bundles/", **bearer).json()
    assert listed["status"] == "done" and listed["volumes"] == 1
    assert Path(listed["folder"]).is_relative_to(bundle_root)

    bad = post_json(client, f"{API}/jobs/{job.pk}/bundles/", {"volume_size": "1k"}, **bearer)
    assert bad.status_code == 400 and "between 64 kB" in error_of(bad)["message"]
    unknown = post_json(client, f"{API}/jobs/{job.pk}/bundles/", {"colour": "red"}, **bearer)
    assert unknown.status_code == 400
    missing = post_json(client, f"{API}/jobs/99999/bundles/", {}, **bearer)
    assert missing.status_code == 404
    from exports.jobs import create_job

    queued = create_job(owner, job.connection, tables=["public.t"])
    early = post_json(client, f"{API}/jobs/{queued.pk}/bundles/", {}, **bearer)
    assert early.status_code == 409
    assert error_of(early)["message"] == f"Job {queued.pk} has no finished export to bundle yet."
    assert client.get(f"{API}/receipts/", **bearer).json() == []


def test_a_bundle_that_cannot_be_written_fails_in_one_sentence(owner, job, tmp_path, settings):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    settings.BUNDLE_ROOT = blocker  # a file where the bundle's folder should go
    bundle = Bundle.objects.create(job=job, created_by=owner, volume_size=1 << 20)
    run(bundle.pk)
    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.FAILED
    assert bundle.error.startswith("The folder ") and "cannot be made" in bundle.error


def test_a_bundle_whose_worker_died_fails_and_leaves_no_volumes(owner, job, bundle_root):
    bundle = Bundle.objects.create(
        job=job,
        created_by=owner,
        volume_size=1 << 20,
        status=Bundle.Status.RUNNING,
        started_at=timezone.now() - timedelta(hours=1),
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    bundle.folder().mkdir(parents=True)
    (bundle.folder() / "adu-job1-x.001.part").write_bytes(b"half")
    sweep_bundles()
    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.FAILED
    assert bundle.error == "Its worker stopped before it ended; start the bundle again."
    assert not bundle.folder().exists()
    assert Receipt.objects.count() == 0
