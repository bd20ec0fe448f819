"""The portal's side of "what may leave": columns, masks and filters per table on the
new-export page, saved queries with their preview, and who may use them."""

import pytest
from django.urls import reverse

from connections.models import SavedQuery, SensitiveColumn
from exports.models import ExportJob


@pytest.fixture
def staff_table(source_db):
    source_db.execute(
        "CREATE TABLE staff (id integer, name text, ssn text, hired date);"
        "INSERT INTO staff SELECT i, 'n' || i, 'ssn-' || i, date '2020-01-15' + i"
        " FROM generate_series(1, 40) i;"
    )
    return source_db


@pytest.mark.django_db(transaction=True)
def test_the_columns_part_lists_each_column_with_its_type_and_policy(client, owner, staff_table):
    connection = staff_table.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="hash")
    client.force_login(owner)
    url = reverse("connection_columns")
    page = client.get(url, {"connection": connection.pk, "schema": "public", "table": "staff"})
    html = page.content.decode()
    assert 'name="col:public.staff" value="hired"' in html and "<code>date</code>" in html
    assert "sensitive: mask: keyed hash" in html
    assert '<option value="hash" selected>' in html
    missing = client.get(url, {"connection": connection.pk, "schema": "public", "table": "nope"})
    assert "There is no table public.nope on this connection." in missing.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_job_from_the_page_takes_the_chosen_columns_masks_filter_and_query(
    client, owner, staff_table, monkeypatch
):
    monkeypatch.setattr("exports.views.start_job", lambda job: None)
    connection = staff_table.connection(owner)
    query = SavedQuery.objects.create(
        connection=connection, name="count", sql="SELECT count(*) AS n FROM staff"
    )
    client.force_login(owner)
    form = {
        "connection": connection.pk, "parallel": 2, "compression_level": 3,
        "batch_rows": 100000, "validation": "sample",
        "tables": ["public.staff"], "detail": ["public.staff"],
        "col:public.staff": ["id", "hired"], "mask:public.staff:hired": "truncate",
        "where:public.staff": "id <= 5", "queries": [str(query.pk)],
    }  # fmt: skip
    response = client.post(reverse("job_new"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ExportJob.objects.get()
    runs = {run.table: run for run in job.tables.all()}
    assert runs["staff"].spec == {
        "columns": ["id", "hired"],
        "filter": "id OPERATOR(pg_catalog.<=) 5",  # what runs: operators said in full
        "masks": {"hired": {"method": "truncate"}},
    }
    assert runs["count"].spec == {"query": "SELECT count(*) AS n FROM staff"}

    for change, message in [
        ({"col:public.staff": []}, "public.staff: no column is checked"),
        ({"where:public.staff": "id = 1; DELETE FROM staff"}, "holds 2 statements"),
        ({"mask:public.staff:hired": "truncate", "precision:public.staff:hired": "x"},
         "The precision of truncate is a whole number"),
    ]:  # fmt: skip
        refused = client.post(reverse("job_new"), {**form, **change})
        assert refused.status_code == 200
        assert message in refused.content.decode()
    assert ExportJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_saved_queries_are_checked_previewed_and_owned(
    client, owner, outsider, viewer, staff_table
):
    connection = staff_table.connection(owner)
    client.force_login(owner)
    preview = client.post(
        reverse("query_preview"),
        {"connection": connection.pk, "sql": "SELECT id, name FROM staff ORDER BY id"},
    ).content.decode()
    assert "40 rows shown (at most 100)" in preview and "<td>n7</td>" in preview
    refused = client.post(
        reverse("query_preview"), {"connection": connection.pk, "sql": "DELETE FROM staff"}
    ).content.decode()
    assert "The query is not a SELECT but DELETE" in refused
    bad = client.post(
        reverse("query_create"),
        {"connection": connection.pk, "name": "bad", "sql": "SELECT nosuch FROM staff"},
    )
    assert "column &quot;nosuch&quot; does not exist" in bad.content.decode()
    client.post(
        reverse("query_create"),
        {"connection": connection.pk, "name": "names", "sql": "SELECT name FROM staff"},
    )
    query = SavedQuery.objects.get()
    assert query.name == "names" and query.created_by == owner
    assert staff_table.execute("SELECT count(*) FROM staff") == [(40,)]

    for user in (outsider, viewer):
        client.force_login(user)
        assert client.get(reverse("query_edit", args=[query.pk])).status_code == 404
        assert client.post(reverse("query_delete", args=[query.pk])).status_code == 404
        denied = client.post(
            reverse("query_preview"), {"connection": connection.pk, "sql": "SELECT 1"}
        )
        assert denied.status_code == 404
    assert client.get(reverse("query_create")).status_code == 403  # the viewer
