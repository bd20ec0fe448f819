"""The client's address behind a proxy (issue 17, point 8a): X-Forwarded-For counts only
when the direct peer is in ADU_FORWARDED_ALLOW_IPS, for lockouts and the audit trail alike
(one function: adu_site.proxy.client_address)."""

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory
from django.urls import reverse

from adu_site.proxy import client_address
from audit.models import AuditEvent
from tests.factories import manage


def address(allowed, remote, forwarded=None, settings=None):
    settings.FORWARDED_ALLOW_IPS = allowed
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().get("/", **extra))


@pytest.mark.parametrize(
    ("allowed", "remote", "forwarded", "expected"),
    [
        ([], "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # the default: never trusted
        ([], "127.0.0.1", "198.51.100.1", "127.0.0.1"),  # not even from this host
        (["10.0.0.5"], "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # peer not a proxy
        (["10.0.0.5"], "10.0.0.5", "198.51.100.1", "198.51.100.1"),
        (["10.0.0.0/8"], "10.0.0.5", "198.51.100.1, 10.0.0.7", "198.51.100.1"),  # two proxies
        # A client's own X-Forwarded-For, to which the proxy appends: the proxy's word only.
        (["10.0.0.5"], "10.0.0.5", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
        (["10.0.0.5"], "10.0.0.5", "not-an-ip", "10.0.0.5"),
        (["10.0.0.5"], "10.0.0.5", "", "10.0.0.5"),
        (["10.0.0.5"], "10.0.0.5", None, "10.0.0.5"),
        (["10.0.0.5"], "10.0.0.5", "198.51.100.1:4711", "198.51.100.1"),
        (["::1"], "::1", "[2001:db8::1]:443", "2001:db8::1"),
        (["*"], "203.0.113.9", "198.51.100.1", "198.51.100.1"),
    ],
)
def test_forwarded_for_counts_only_from_a_trusted_peer(
    settings, allowed, remote, forwarded, expected
):
    assert address(allowed, remote, forwarded, settings) == expected


def test_the_default_trusts_no_proxy():
    assert django_settings.FORWARDED_ALLOW_IPS == []
    assert django_settings.AXES_CLIENT_IP_CALLABLE == "adu_site.proxy.client_address"


def login(client, password, remote, forwarded):
    return client.post(
        reverse("login"),
        {"username": "owner", "password": password},
        REMOTE_ADDR=remote,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


@pytest.mark.django_db
def test_a_forged_forwarded_for_neither_escapes_a_lockout_nor_reaches_the_trail(client, owner):
    # The attack: a new X-Forwarded-For on every guess, to look like a new address.
    for n in range(5):
        login(client, "wrong", "203.0.113.9", f"198.51.100.{n}")
    locked = login(client, "owner-pass-123", "203.0.113.9", "198.51.100.77")
    assert locked.status_code == 429
    addresses = set(AuditEvent.objects.values_list("ip_address", flat=True))
    assert addresses == {"203.0.113.9"}


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_has_its_own_address(client, owner, settings):
    settings.FORWARDED_ALLOW_IPS = ["10.0.0.5"]
    for _ in range(5):
        login(client, "wrong", "10.0.0.5", "198.51.100.1")
    assert login(client, "owner-pass-123", "10.0.0.5", "198.51.100.1").status_code == 429
    # Another client behind the same proxy is not locked out by the first one's guesses.
    assert login(client, "owner-pass-123", "10.0.0.5", "198.51.100.2").status_code == 302
    failed = AuditEvent.objects.filter(action="login_failed")
    assert set(failed.values_list("ip_address", flat=True)) == {"198.51.100.1"}
    assert AuditEvent.objects.get(action="login").ip_address == "198.51.100.2"


def test_a_malformed_list_stops_startup_with_one_sentence(tmp_path):
    result = manage(tmp_path, "check", ADU_FORWARDED_ALLOW_IPS="10.0.0.5,proxy.internal")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ADU cannot start: ADU_FORWARDED_ALLOW_IPS must be")
    assert "Traceback" not in result.stderr
