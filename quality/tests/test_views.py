"""Rule pages: the owner lists, creates, edits and deletes rules; another user gets 404, an
anonymous visitor is sent to log in, the wrong method gets 405, and a rule the source's
table cannot satisfy is refused next to the field that is wrong."""

import pytest
from django.db import connection as django_db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from connections.localpg import free_port
from connections.models import Connection
from quality.models import Rule
from tests.factories import rule_form

PASSWORD = "Rule-Secret-Mark"


@pytest.fixture
def connection(owner, source_db):
    source_db.execute(
        "CREATE TABLE orders (id integer, amount integer, code text, placed date, at timestamptz)"
    )
    return source_db.connection(owner, name="src")


@pytest.fixture
def stored_connection(owner):
    """A connection that is never dialled: for pages that do not ask the source."""
    return Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl"
    )


@pytest.fixture
def rule(stored_connection, owner):
    return Rule.objects.create(
        connection=stored_connection,
        schema="public",
        table="orders",
        column="amount",
        kind=Rule.Kind.RANGE,
        minimum="0",
        maximum="100",
        created_by=owner,
    )


def pages(rule):
    """(url, methods that work) for every rule page."""
    return [
        (reverse("rule_list"), ["GET"]),
        (reverse("rule_list") + f"?connection={rule.connection_id}", ["GET"]),
        (reverse("rule_create"), ["GET", "POST"]),
        (reverse("rule_edit", args=[rule.pk]), ["GET", "POST"]),
        (reverse("rule_delete", args=[rule.pk]), ["GET", "POST"]),
    ]


@pytest.mark.django_db
def test_the_list_shows_the_owners_rules_of_one_connection(client, owner, rule):
    other = Connection.objects.create(
        owner=owner, name="other", host="h", database="d", username="u"
    )
    Rule.objects.create(
        connection=other, schema="s", table="elsewhere", kind="min_rows", min_rows=1
    )
    client.force_login(owner)
    page = client.get(reverse("rule_list")).content.decode()
    assert "public.orders" in page and "amount between 0 and 100" in page and "s.elsewhere" in page
    assert reverse("rule_edit", args=[rule.pk]) in page
    assert reverse("rule_delete", args=[rule.pk]) in page
    one = client.get(reverse("rule_list") + f"?connection={rule.connection_id}").content.decode()
    assert "amount between 0 and 100" in one and "s.elsewhere" not in one


@pytest.mark.django_db
def test_the_list_takes_the_same_queries_for_one_rule_or_many(client, owner, rule):
    client.force_login(owner)

    def queries():
        with CaptureQueriesContext(django_db) as captured:
            client.get(reverse("rule_list"))
        return len(captured)

    one = queries()
    for table in ("a", "b", "c"):
        Rule.objects.create(connection=rule.connection, schema="s", table=table, kind="unique",
                            column="id")  # fmt: skip
    assert queries() == one


@pytest.mark.django_db
def test_the_connection_list_links_to_its_rules(client, owner, stored_connection):
    client.force_login(owner)
    page = client.get(reverse("connection_list")).content.decode()
    assert f'href="{reverse("rule_list")}?connection={stored_connection.pk}"' in page


@pytest.mark.django_db
def test_the_new_rule_form_is_prefilled_from_the_query(client, owner, stored_connection):
    client.force_login(owner)
    query = f"?connection={stored_connection.pk}&schema=sales&table=orders"
    form = client.get(reverse("rule_create") + query).context["form"]
    assert form["connection"].value() == str(stored_connection.pk)
    assert form["schema"].value() == "sales" and form["table"].value() == "orders"


@pytest.mark.django_db
def test_the_owner_creates_a_rule(client, owner, connection):
    client.force_login(owner)
    response = client.post(reverse("rule_create"), rule_form(connection), follow=True)
    rule = Rule.objects.get()
    assert response.redirect_chain[-1][0] == reverse("rule_list") + f"?connection={connection.pk}"
    assert rule.created_by == owner and rule.minimum == "0" and rule.maximum == "100"
    assert "public.orders: amount between 0 and 100" in response.content.decode()


@pytest.mark.django_db
def test_allowed_values_are_entered_one_per_line(client, owner, connection):
    client.force_login(owner)
    values = "new\r\n\r\n  paid \r\nshipped\n"
    data = rule_form(connection, kind="allowed", column="code", allowed_values=values)
    assert client.post(reverse("rule_create"), data).status_code == 302
    rule = Rule.objects.get()
    assert rule.allowed_values == ["new", "paid", "shipped"]
    # Left over from the kind the form started with, the bounds are not stored.
    assert rule.minimum == "" and rule.maximum == ""
    page = client.get(reverse("rule_edit", args=[rule.pk])).content.decode()
    assert ">\nnew\npaid\nshipped</textarea>" in page


@pytest.mark.django_db
def test_a_row_count_rule_needs_no_column(client, owner, connection):
    client.force_login(owner)
    data = rule_form(connection, kind="min_rows", column="amount", min_rows="10")
    assert client.post(reverse("rule_create"), data).status_code == 302
    rule = Rule.objects.get()
    assert rule.column == "" and rule.min_rows == 10


@pytest.mark.django_db
def test_the_owner_edits_a_rule(client, owner, connection):
    rule = Rule.objects.create(
        connection=connection, schema="public", table="orders", column="amount",
        kind="range", minimum="0",
    )  # fmt: skip
    client.force_login(owner)
    url = reverse("rule_edit", args=[rule.pk])
    assert 'value="amount"' in client.get(url).content.decode()
    data = rule_form(connection, maximum="500", severity="error", enabled="")
    response = client.post(url, data)
    assert response["Location"] == reverse("rule_list") + f"?connection={connection.pk}"
    rule.refresh_from_db()
    assert (rule.maximum, rule.severity, rule.enabled) == ("500", "error", False)


@pytest.mark.django_db
def test_the_owner_deletes_a_rule_after_confirming(client, owner, rule):
    client.force_login(owner)
    url = reverse("rule_delete", args=[rule.pk])
    assert "amount between 0 and 100" in client.get(url).content.decode()
    assert Rule.objects.exists()
    response = client.post(url)
    assert response["Location"] == reverse("rule_list") + f"?connection={rule.connection_id}"
    assert not Rule.objects.exists()


@pytest.mark.django_db
def test_another_user_gets_404_for_the_owners_rules(client, outsider, rule):
    client.force_login(outsider)
    for url, methods in pages(rule):
        if str(rule.pk) not in url and str(rule.connection_id) not in url:
            continue  # pages of their own (the list, a new rule) are theirs to see
        for method in methods:
            response = client.get(url) if method == "GET" else client.post(url)
            assert response.status_code == 404, (method, url)
    assert "public.orders" not in client.get(reverse("rule_list")).content.decode()
    assert Rule.objects.filter(pk=rule.pk).exists()


@pytest.mark.django_db
def test_another_users_connection_cannot_be_chosen(client, outsider, stored_connection):
    client.force_login(outsider)
    page = client.get(reverse("rule_create")).content.decode()
    assert f'value="{stored_connection.pk}"' not in page
    response = client.post(reverse("rule_create"), rule_form(stored_connection))
    assert "Select a valid choice" in response.context["form"].errors["connection"][0]
    assert not Rule.objects.exists()


@pytest.mark.django_db
def test_staff_see_and_edit_every_rule(client, admin_user, rule):
    client.force_login(admin_user)
    assert "amount between 0 and 100" in client.get(reverse("rule_list")).content.decode()
    assert client.get(reverse("rule_edit", args=[rule.pk])).status_code == 200
    assert client.post(reverse("rule_delete", args=[rule.pk])).status_code == 302
    assert not Rule.objects.exists()


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(client, rule):
    for url, methods in pages(rule):
        for method in methods:
            response = client.get(url) if method == "GET" else client.post(url)
            assert response.status_code == 302, (method, url)
            assert "/accounts/login/" in response["Location"], (method, url)
    assert Rule.objects.exists()


@pytest.mark.django_db
def test_the_wrong_method_gets_405(client, owner, rule):
    client.force_login(owner)
    for url, methods in pages(rule):
        for method in {"POST", "PUT", "DELETE"} - set(methods):
            response = client.generic(method, url)
            assert response.status_code == 405, (method, url)
    assert Rule.objects.exists()


REFUSED = [
    ("column", {"column": "nope"}, "public.orders has no column 'nope'."),
    (
        "pattern",
        {"kind": "regex", "column": "code", "pattern": "a("},
        "This is not a valid regular expression",
    ),
    ("maximum", {"minimum": "10", "maximum": "5"}, "The maximum is below the minimum."),
    ("minimum", {"minimum": "abc"}, "'abc' is not a value of type int32."),
    (
        "allowed_values",
        {"kind": "allowed", "allowed_values": "1\nx"},
        "'x' is not a value of type int32.",
    ),
    (
        "column",
        {"kind": "regex", "pattern": "^[0-9]+$"},
        "A pattern checks text; amount is exported as int32.",
    ),
    (
        "column",
        {"kind": "no_gaps", "column": "code", "grain": "day"},
        "'No gaps' needs a date or timestamp column; code is exported as string.",
    ),
    ("table", {"table": "nope"}, "There is no table public.nope on this connection."),
    ("table", {"table": ""}, "This field is required."),
    ("column", {"column": ""}, "Choose the column this rule checks."),
]


@pytest.mark.django_db
@pytest.mark.parametrize("field, changes, message", REFUSED)
def test_a_rule_the_table_cannot_satisfy_is_refused_next_to_the_field(
    client, owner, connection, field, changes, message
):
    client.force_login(owner)
    response = client.post(reverse("rule_create"), rule_form(connection, **changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field], errors
    assert message in errors[field][0]
    assert escape(message) in response.content.decode()
    assert not Rule.objects.exists()


@pytest.mark.django_db
def test_an_edit_is_checked_against_the_source_too(client, owner, connection):
    rule = Rule.objects.create(
        connection=connection, schema="public", table="orders", column="amount",
        kind="range", minimum="0",
    )  # fmt: skip
    client.force_login(owner)
    response = client.post(
        reverse("rule_edit", args=[rule.pk]), rule_form(connection, column="gone")
    )
    assert "has no column 'gone'" in response.context["form"].errors["column"][0]
    rule.refresh_from_db()
    assert rule.column == "amount"


@pytest.mark.django_db
def test_an_unreachable_source_is_one_sentence_on_the_form(client, owner):
    port = free_port()
    gone = Connection.objects.create(
        owner=owner, name="gone", host="127.0.0.1", port=port, database="dw",
        username="etl", password=PASSWORD, sslmode="disable", connect_timeout=2,
    )  # fmt: skip
    client.force_login(owner)
    response = client.post(reverse("rule_create"), rule_form(gone))
    page = response.content.decode()
    [error] = response.context["form"].non_field_errors()
    assert error.startswith("ADU could not check the rule against the source: ")
    assert f"Connection refused by 127.0.0.1:{port}" in error
    assert PASSWORD not in page and "Traceback" not in page
    assert not Rule.objects.exists()
