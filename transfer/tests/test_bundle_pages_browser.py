"""A transfer prepared from a finished job's page in headless Chromium: the form sent, the
bundle's row queued, then done by itself (the list polls) without a reload; the far side's
Receipts page with its Load button leading to the new-load form with the folder filled."""

import re

import pytest

from tests.browser import BROWSER_TEST, log_in, shot
from transfer import keys
from transfer.models import Bundle
from transfer.receive import receive
from transfer.tasks import run

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_prepare_transfer_then_receive_then_load_from_the_receipt(
    live_server, browser_page, source_db, owner, export, monkeypatch, settings, tmp_path, target
):
    # The test runs the bundle's task itself, as the cluster's worker would.
    monkeypatch.setattr("transfer.views.start_bundle", lambda bundle: None)
    settings.BUNDLE_ROOT = tmp_path / "bundles"
    source_db.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) AS m FROM generate_series(1, 3000) i"
    )
    job = export(source_db.connection(owner), tables=["public.t"])
    page = browser_page
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    log_in(page, "owner", "owner-pass-123")
    page.fill("#bundle-form input[name=volume_size]", "64K")
    page.click("#prepare-transfer")
    page.wait_for_url(re.compile(rf"/jobs/{job.pk}/$"))
    bundle = Bundle.objects.get()
    page.evaluate("window.notReloaded = true")
    row = page.locator(f"#bundles tr[data-bundle='{bundle.pk}']")
    assert row.locator(".status").inner_text() == "Queued"
    assert page.get_attribute("#bundles", "hx-trigger") == "every 2s"
    shot(page, "transfer-00-queued")

    run(bundle.pk)
    page.wait_for_selector(f"#bundles tr[data-bundle='{bundle.pk}'] .status:text-is('Done')")
    bundle.refresh_from_db()
    assert bundle.name in row.inner_text() and bundle.volumes >= 2
    assert page.get_attribute("#bundles", "hx-trigger") is None
    assert page.evaluate("window.notReloaded === true")
    shot(page, "transfer-01-done")

    [index] = bundle.folder().glob("*.index.json")
    trusted = [keys.TrustedKey("exporter.pem", keys.signing_key().public_key())]
    received = receive(index, trusted, owner)
    page.click("header nav >> text=Receipts")
    receipt = page.locator(f"tr[data-receipt='{received.receipt.pk}']")
    assert "exporter.pem" in receipt.inner_text() and "3,000" in receipt.inner_text()
    shot(page, "transfer-02-receipts")
    receipt.locator("a.button:text-is('Load')").click()
    page.wait_for_url(re.compile(r"/loads/new/"))
    shot(page, "transfer-03-new-load")
    assert page.input_value("#id_folder") == received.receipt.folder
