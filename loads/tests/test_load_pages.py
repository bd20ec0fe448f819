"""The load pages without a browser: the list with its counts, the new-load form (what it
offers, a refusal told in the field it is about with nothing typed lost, a load queued),
a load's page with its tables and fingerprints, cancel, and who may see or act on what.
Also the connection form's "load target" box, without which no load could be started."""

import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection as django_db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.brokers import get_broker

from connections.models import Connection
from exports.models import ExportJob
from loads.engine import run_load
from loads.models import Load, TableLoad
from tests.factories import portal_data, throwaway_database, user_with_role

MANIFEST_SHA256 = "5e" * 32
FILE = {"rows": 100, "digest": "00000000000000aa"}
OTHER = {"rows": 100, "digest": "00000000000000bb"}


def far_away(owner, name="far", is_target=True) -> Connection:
    """A connection no test connects to: the pages show loads into it without a server."""
    return Connection.objects.create(
        owner=owner, name=name, kind="postgresql", host="far.invalid", port=5432,
        database="dw", username="loader", password="pw-123456", is_target=is_target,
    )  # fmt: skip


def load_of(owner, target, status=Load.Status.RUNNING, tables=()) -> Load:
    """A load as the engine leaves it; tables: (name, status, rows, fields of the TableLoad)."""
    load = Load.objects.create(
        owner=owner, target=target, folder="/srv/adu/received/job-7", status=status,
        manifest_sha256=MANIFEST_SHA256, source_job_id=7,
        options={"schema_map": {}, "tables": [], "if_exists": "fail", "parallel": 2,
                 "create_only": False},
    )  # fmt: skip
    for name, table_status, rows, fields in tables:
        TableLoad.objects.create(
            load=load, schema="public", table=name, target_schema="public",
            status=table_status, rows=rows, **fields,
        )  # fmt: skip
    return load


def row_of(page: str, load: Load) -> str:
    return re.search(rf'<tr data-load="{load.pk}">.*?</tr>', page, re.S).group()


def field_of(page: str, name: str) -> str:
    """The .field block of one form field (templates/_fields.html), its errors included."""
    found = re.search(rf'<div class="field">\s*<label for="id_{name}">.*?</div>', page, re.S)
    return found.group()


def text_of(html: str) -> str:
    """What a reader sees of some HTML: the text, its spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def pages(load):
    """(url, the method that works) of every page and partial about one load."""
    return [
        (reverse("load_detail", args=[load.pk]), "GET"),
        (reverse("load_live", args=[load.pk]), "GET"),
        (reverse("load_cancel", args=[load.pk]), "POST"),
    ]


@pytest.fixture
def shared(owner, django_user_model):
    """owner's load into a target shared with "analysts": a teammate (an operator in it)
    and a viewer in it see it; neither may cancel it."""
    target = far_away(owner)
    analysts = Group.objects.create(name="analysts")
    target.shared_with.add(analysts)
    teammate = user_with_role(django_user_model, "teammate", "ADU Operator")
    viewer = user_with_role(django_user_model, "analyst", "ADU Viewer")
    for user in (teammate, viewer):
        user.groups.add(analysts)
    load = load_of(owner, target, tables=[("t", TableLoad.Status.LOADING, 40, {})])
    return load, teammate, viewer


# -- The list ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_shows_each_load_newest_first_with_the_counts_of_its_tables(client, owner):
    target = far_away(owner)
    done = {"file_fingerprint": FILE, "target_fingerprint": FILE}
    first = load_of(owner, target, Load.Status.COMPLETE_WITH_ERRORS, [
        ("a", TableLoad.Status.LOADED, 1500, done),
        ("b", TableLoad.Status.FAILED, 0, {"error": "Table public.b is already in the target."}),
        ("c", TableLoad.Status.CREATED, 0, {}),
    ])  # fmt: skip
    second = load_of(owner, target, Load.Status.RUNNING, [
        ("a", TableLoad.Status.LOADING, 70, {}), ("b", TableLoad.Status.QUEUED, 0, {}),
    ])  # fmt: skip
    client.force_login(owner)
    page = client.get(reverse("load_list")).content.decode()

    assert page.index(f'data-load="{second.pk}"') < page.index(f'data-load="{first.pk}"')
    for load in (first, second):
        counts, row = load.counts(), row_of(page, load)
        told = f"{counts['tables_done']} of {counts['tables_total']} tables done"
        assert told in row and f'<td class="num">{counts["rows"]:,}</td>' in row
        assert f">{load.get_status_display()}<" in row and "<td>far</td>" in row
        assert "<td>#7</td>" in row
    assert "2 of 3 tables done, 1 failed" in row_of(page, first)
    assert "0 of 2 tables done" in row_of(page, second)
    assert "1,500" in row_of(page, first)


@pytest.mark.django_db
def test_the_list_counts_its_loads_tables_in_one_query_not_one_per_row(client, owner):
    target = far_away(owner)
    client.force_login(owner)

    def queries() -> int:
        with CaptureQueriesContext(django_db) as context:
            assert client.get(reverse("load_list")).status_code == 200
        return len(context.captured_queries)

    load_of(owner, target, tables=[("a", TableLoad.Status.LOADING, 1, {})])
    few = queries()
    for _ in range(4):
        load_of(owner, target, tables=[("a", TableLoad.Status.LOADING, 1, {})])
    assert queries() == few


@pytest.mark.django_db
def test_the_list_refreshes_while_a_load_is_unfinished_and_then_stops(client, owner):
    load = load_of(owner, far_away(owner), Load.Status.QUEUED)
    client.force_login(owner)
    polled = client.get(reverse("load_list")).content.decode()
    assert f'hx-get="{reverse("load_list_rows")}?' in polled and 'hx-trigger="every 2s"' in polled

    Load.objects.filter(pk=load.pk).update(status=Load.Status.COMPLETE)
    rows = client.get(reverse("load_list_rows")).content.decode()
    assert f'data-load="{load.pk}"' in rows and "hx-trigger" not in rows


# -- A new load ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_form_offers_only_load_targets_and_suggests_complete_exports(
    client, owner, source_db, export, settings
):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS i")
    near = source_db.connection(owner, name="near")
    far = far_away(owner)
    job = export(near, tables=["public.t"])
    failed = ExportJob.create_with_tables(owner, near, [("public", "t")], options={})
    ExportJob.objects.filter(pk=failed.pk).update(status=ExportJob.Status.FAILED)
    client.force_login(owner)
    page = client.get(reverse("load_new")).content.decode()

    target = re.search(r'<select name="target".*?</select>', page, re.S).group()
    assert f'value="{far.pk}"' in target and f'value="{near.pk}"' not in target
    assert f'<option value="{job.folder()}">job #{job.pk} · near' in page
    assert str(failed.folder()) not in page
    assert str(settings.RECEIVE_ROOT) in page and str(settings.EXPORT_ROOT) in page

    # Sent anyway, a connection not marked as a load target is refused.
    response = client.post(reverse("load_new"), {"folder": job.folder(), "target": near.pk})
    assert "Select a valid choice" in field_of(response.content.decode(), "target")
    assert not Load.objects.exists()


@pytest.mark.django_db
def test_without_a_load_target_the_page_says_how_to_get_one(client, owner):
    far_away(owner, is_target=False)
    client.force_login(owner)
    page = client.get(reverse("load_new")).content.decode()
    assert "You have no connection marked as a load target" in page
    assert 'id="new-load"' not in page


@pytest.mark.django_db
def test_a_bad_folder_is_refused_in_its_field_keeping_what_was_typed(client, owner, settings):
    far = far_away(owner)
    client.force_login(owner)
    typed = {
        "folder": "/etc/adu-elsewhere", "target": far.pk, "tables": "public.t, public.u",
        "schema_map": "public=landed", "if_exists": "append", "parallel": "3",
        "create_only": "on",
    }  # fmt: skip
    response = client.post(reverse("load_new"), typed)
    assert response.status_code == 200
    page = response.content.decode()
    sentence = (
        f"/etc/adu-elsewhere is not under the receive root ({settings.RECEIVE_ROOT}) or the "
        f"export root ({settings.EXPORT_ROOT}): a load reads an export from one of them."
    )
    assert sentence in field_of(page, "folder") and page.count(sentence) == 1
    assert 'value="/etc/adu-elsewhere"' in field_of(page, "folder")
    assert 'value="public.t, public.u"' in field_of(page, "tables")
    assert ">\npublic=landed</textarea>" in field_of(page, "schema_map")
    assert '<option value="append" selected>' in field_of(page, "if_exists")
    assert 'value="3"' in field_of(page, "parallel")
    assert "checked" in field_of(page, "create_only")
    assert f'<option value="{far.pk}" selected>' in field_of(page, "target")
    assert not Load.objects.exists()

    # The form's own check of the schema map, in its field too.
    response = client.post(reverse("load_new"), {**typed, "schema_map": "public landed"})
    error = "--schema-map takes SOURCE=TARGET, not &#x27;public landed&#x27;."
    assert error in field_of(response.content.decode(), "schema_map")


@pytest.mark.django_db(transaction=True)
def test_a_load_from_the_form_is_queued_and_its_page_proves_each_table(
    client, owner, source_db, source_server, export, monkeypatch
):
    source_db.execute(
        "CREATE TABLE t AS SELECT i, 'n' || i AS name FROM generate_series(1, 1500) i"
    )
    source_db.execute("CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1), (2)")
    job = export(source_db.connection(owner), tables=["public.t", "public.u"], fingerprint="on")
    assert job.status == ExportJob.Status.COMPLETE
    with throwaway_database(source_server) as target_db:
        far = target_db.connection(owner, name="far", is_target=True)
        client.force_login(owner)
        form = {"folder": str(job.folder()), "target": far.pk, "if_exists": "fail",
                "parallel": "2", "schema_map": "public=landed"}  # fmt: skip

        # Refused in the field the refusal names: here the tables.
        response = client.post(reverse("load_new"), {**form, "tables": "public.t, public.nope"})
        tables = field_of(response.content.decode(), "tables")
        assert "The export has no table public.nope." in tables
        assert not Load.objects.exists()

        queue = get_broker()
        waiting = queue.queue_size()
        response = client.post(reverse("load_new"), form)
        load = Load.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("load_detail", args=[load.pk])
        assert queue.queue_size() == waiting + 1  # start_load queued it on the cluster
        assert (load.owner, load.target, load.status) == (owner, far, Load.Status.QUEUED)
        assert load.options["schema_map"] == {"public": "landed"}
        assert load.source_job_id == job.pk
        queued = client.get(response["Location"]).content.decode()
        assert f"Load {load.pk} started: 2 table(s) into &#x27;far&#x27;." in queued
        assert 'hx-trigger="every 2s"' in queued

        load = run_load(load.pk)  # what the cluster's worker does with the task
        assert load.status == Load.Status.VERIFIED, [t.error for t in load.tables.all()]
        page = client.get(reverse("load_detail", args=[load.pk])).content.decode()
        live = client.get(reverse("load_live", args=[load.pk])).content.decode()

    assert "hx-trigger" not in live and 'id="cancel"' not in live
    assert f"<code>{job.folder()}</code>" in page
    assert f'<code id="manifest-sha256">{load.manifest_sha256}</code>' in page
    assert f'<a href="{reverse("job_detail", args=[job.pk])}">#{job.pk}</a>' in page
    assert "<code>public</code> → <code>landed</code>" in page
    assert "Fail: a table that is already there fails" in page
    assert "2 of 2 tables done · 1,502 rows" in text_of(live)
    for table in load.tables.all():
        row = re.search(rf'<tr data-table="public.{table.table}">.*?</tr>', live, re.S).group()
        assert f"<td>landed.{table.table}</td>" in row and f">{table.rows:,}<" in row
        assert "target = file = source" in row
        digest = table.target_fingerprint["digest"]
        assert digest == table.file_fingerprint["digest"] == table.source_fingerprint["digest"]
        for side in ("file", "target", "source"):
            assert f'<code class="fingerprint-{side}">{digest}</code>' in row


@pytest.mark.django_db
def test_the_page_shows_each_tables_proof_error_and_what_was_left_out(client, owner):
    load = load_of(owner, far_away(owner), Load.Status.RUNNING, [
        ("same", TableLoad.Status.LOADED, 100,
         {"file_fingerprint": FILE, "target_fingerprint": FILE,
          "notes": ["check positive_amount (it reads a masked column)"]}),
        ("differ", TableLoad.Status.FAILED, 0,
         {"file_fingerprint": FILE, "target_fingerprint": OTHER,
          "error": "The rows in the target differ from the file: nothing was kept."}),
        ("waiting", TableLoad.Status.QUEUED, 0, {}),
    ])  # fmt: skip
    client.force_login(owner)
    page = client.get(reverse("load_detail", args=[load.pk])).content.decode()

    same = re.search(r'<tr data-table="public.same">.*?</tr>', page, re.S).group()
    assert '<strong class="proof ok">target = file</strong>' in same
    assert f'<code class="fingerprint-target">{FILE["digest"]}</code>' in same
    assert '<code class="fingerprint-source">—</code>' in same
    assert "left out: check positive_amount (it reads a masked column)" in page
    differ = re.search(r'<tr data-table="public.differ">.*?</tr>', page, re.S).group()
    assert '<strong class="proof error">target ≠ file</strong>' in differ
    assert "The rows in the target differ from the file: nothing was kept." in page
    waiting = re.search(r'<tr data-table="public.waiting">.*?</tr>', page, re.S).group()
    assert "proof" not in waiting
    assert "1 of 3 tables done, 1 failed · 100 rows" in text_of(page)
    assert 'id="cancel"' in page and 'hx-trigger="every 2s"' in page


# -- Cancel, and who may do what -----------------------------------------------------------


@pytest.mark.django_db
def test_the_owner_cancels_a_queued_load_and_it_ends_at_once(client, owner):
    load = load_of(owner, far_away(owner), Load.Status.QUEUED, [
        ("a", TableLoad.Status.QUEUED, 0, {}),
    ])  # fmt: skip
    client.force_login(owner)
    response = client.post(reverse("load_cancel", args=[load.pk]), follow=True)
    load.refresh_from_db()
    assert load.status == Load.Status.CANCELLED
    assert load.tables.get().status == TableLoad.Status.CANCELLED
    page = response.content.decode()
    assert f"Load {load.pk} cancelled." in page and 'id="cancel"' not in page

    # Cancelling what has ended changes nothing.
    Load.objects.filter(pk=load.pk).update(status=Load.Status.COMPLETE)
    again = client.post(reverse("load_cancel", args=[load.pk]), follow=True).content.decode()
    assert f"Load {load.pk} had already ended: Complete." in again


@pytest.mark.django_db
def test_a_running_load_is_asked_to_stop(client, owner):
    load = load_of(owner, far_away(owner), Load.Status.RUNNING, [
        ("a", TableLoad.Status.LOADING, 10, {}),
    ])  # fmt: skip
    client.force_login(owner)
    response = client.post(reverse("load_cancel", args=[load.pk]), follow=True)
    load.refresh_from_db()
    assert load.cancel_requested and load.status == Load.Status.RUNNING
    assert f"Load {load.pk} is being cancelled." in response.content.decode()


@pytest.mark.django_db
def test_teammates_and_viewers_see_a_shared_load_but_may_not_cancel_it(client, shared):
    load, teammate, viewer = shared
    for user in (teammate, viewer):
        client.force_login(user)
        assert f'data-load="{load.pk}"' in client.get(reverse("load_list")).content.decode()
        page = client.get(reverse("load_detail", args=[load.pk])).content.decode()
        assert "0 of 1 table done" in page
        assert 'id="cancel"' not in page
        # As for export jobs: an action on a load one may not act on is a 404.
        assert client.post(reverse("load_cancel", args=[load.pk])).status_code == 404
    load.refresh_from_db()
    assert not load.cancel_requested
    client.force_login(viewer)
    assert client.get(reverse("load_new")).status_code == 403
    assert client.post(reverse("load_new"), {"folder": load.folder}).status_code == 403
    assert b"New load" not in client.get(reverse("load_list")).content


@pytest.mark.django_db
def test_an_outsider_gets_404_and_sees_no_load_in_the_list(client, outsider, shared):
    load, _, _ = shared
    client.force_login(outsider)
    for url, method in pages(load):
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 404, url
    assert f'data-load="{load.pk}"' not in client.get(reverse("load_list")).content.decode()
    assert client.get(reverse("load_detail", args=[load.pk + 100])).status_code == 404
    load.refresh_from_db()
    assert not load.cancel_requested


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(client, shared):
    load, _, _ = shared
    everything = [*pages(load), (reverse("load_list"), "GET"), (reverse("load_new"), "GET")]
    for url, method in everything:
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.django_db
def test_the_wrong_method_gets_405(client, owner, shared):
    load, _, _ = shared
    client.force_login(owner)
    lists = [(reverse("load_list"), "GET"), (reverse("load_list_rows"), "GET")]
    for url, method in [*pages(load), *lists]:
        response = client.post(url) if method == "GET" else client.get(url)
        assert response.status_code == 405, url
    assert client.put(reverse("load_new")).status_code == 405


# -- Marking a connection as a load target -------------------------------------------------


@pytest.mark.django_db
def test_a_connection_is_marked_as_a_load_target_on_its_form_and_shown_on_its_page(client, owner):
    connection = far_away(owner, name="dw", is_target=False)
    client.force_login(owner)
    edit = reverse("connection_edit", args=[connection.pk])
    form = client.get(edit).content.decode()
    assert '<label for="id_is_target">Load target</label>' in form
    detail = reverse("connection_detail", args=[connection.pk])
    assert "no: ADU only reads from it" in client.get(detail).content.decode()

    saved = client.post(edit, portal_data(connection, password="pw-123456", is_target="on"))
    assert saved.status_code == 302
    connection.refresh_from_db()
    assert connection.is_target
    assert "yes: ADU may create schemas and tables here" in client.get(detail).content.decode()
    # Saved without the box, it is a load target no more.
    client.post(edit, portal_data(connection, password="pw-123456"))
    connection.refresh_from_db()
    assert not connection.is_target
