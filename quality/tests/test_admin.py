"""The admin adds rules through the portal's form: checked against the source the same way."""

import pytest

from quality.models import Rule
from tests.factories import rule_form

ADD = "/admin/quality/rule/add/"


@pytest.fixture
def connection(admin_user, source_db):
    source_db.execute("CREATE TABLE orders (id integer, amount integer)")
    return source_db.connection(admin_user, name="src")


@pytest.mark.django_db
def test_the_admin_adds_a_valid_rule(client, admin_user, connection):
    client.force_login(admin_user)
    response = client.post(ADD, rule_form(connection))
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = Rule.objects.get()
    assert rule.created_by == admin_user and rule.describe() == "amount between 0 and 100"


@pytest.mark.django_db
def test_the_admin_refuses_an_unknown_column(client, admin_user, connection):
    client.force_login(admin_user)
    response = client.post(ADD, rule_form(connection, column="nope"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["column"] == ["public.orders has no column 'nope'."]
    assert not Rule.objects.exists()


@pytest.mark.django_db
def test_the_list_shows_rules_with_their_filters(client, admin_user, connection):
    Rule.objects.create(connection=connection, schema="public", table="orders", kind="min_rows",
                        min_rows=5)  # fmt: skip
    client.force_login(admin_user)
    page = client.get("/admin/quality/rule/?kind=min_rows").content.decode()
    assert "orders" in page and "Row count at least" in page
