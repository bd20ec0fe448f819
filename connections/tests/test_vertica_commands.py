"""A Vertica source through the commands and the portal, as a PostgreSQL one.

No Vertica server can run here: connections.tests.fake_vertica stands in for one.
"""

import io
import json

import pyarrow.parquet as pq
import pytest
import vertica_python
from django.core.management import call_command
from django.urls import reverse
from vertica_python.datatypes import VerticaType as V

from connections.models import Connection
from connections.tests import fake_vertica as fv
from connections.tests.fake_vertica import FakeColumn, FakeTable, FakeVertica


@pytest.fixture
def warehouse(monkeypatch):
    server = FakeVertica(
        [
            FakeTable(
                "sales",
                "orders",
                [
                    FakeColumn("id", "int", V.INT8, values=[fv.int8(i) for i in range(1, 2001)]),
                    FakeColumn(
                        "amount", "numeric(12,2)", V.NUMERIC, fv.numeric_modifier(12, 2),
                        values=[fv.numeric(i * 125) for i in range(1, 2001)],
                    ),
                ],
            )
        ],
        schemas=["sales"],
        catalog_tables=[
            ("sales", "feed", "external table", None, None),
            ("sales", "orders", "table", 2000, 65536),
        ],
    )  # fmt: skip
    monkeypatch.setattr(vertica_python, "connect", server.connect)
    return server


def command(*args):
    out = io.StringIO()
    call_command(*args, "--as", "owner", stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_add_discover_and_export_a_vertica_source(owner, warehouse, monkeypatch, export_root):
    monkeypatch.setenv("WH_PW", "Vertica-Secret-Mark")
    command(
        "adu_connection", "add", "wh", "--kind", "vertica", "--host", "vertica.internal",
        "--database", "dw", "--user", "etl", "--password-env", "WH_PW",
    )  # fmt: skip
    connection = Connection.objects.get(name="wh")
    assert (connection.kind, connection.port) == ("vertica", 5433)
    assert command("adu_connection", "test", "wh").startswith("OK: Vertica Analytic Database")

    rows = json.loads(command("adu_discover", "wh", "--json"))
    assert [(r["table"], r["kind"], r["rows_estimate"]) for r in rows] == [
        ("feed", "external table", None),
        ("orders", "table", 2000),
    ]

    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_export", "wh", "--sync", "--json", "--as", "owner", stdout=out)
    result = json.loads(out.getvalue())
    assert exit_info.value.code == 0, result
    assert [(t["table"], t["status"], t["rows"]) for t in result["tables"]] == [
        ("orders", "complete", 2000)
    ]  # the external table is listed, not exported unless named
    data = pq.read_table(export_root / f"job-{result['job_id']}" / "sales" / "orders.parquet")
    assert data.column("amount").to_pylist()[-1] == pytest.approx(2500)
    assert str(data.column("amount").to_pylist()[0]) == "1.25"
    assert "Vertica-Secret-Mark" not in out.getvalue()


@pytest.mark.django_db
def test_the_portal_lists_vertica_tables_and_leaves_external_ones_unselected(
    client, owner, warehouse
):
    connection = Connection.objects.create(
        owner=owner, name="wh", kind="vertica", host="vertica.internal", port=5433,
        database="dw", username="etl", password="x", sslmode="disable",
    )  # fmt: skip
    client.force_login(owner)
    page = client.get(reverse("connection_tables"), {"connection": connection.pk})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-name="sales.orders"' in html and "external table" in html
    assert 'data-name="sales.feed" data-external' in html
