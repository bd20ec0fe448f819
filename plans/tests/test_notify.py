"""Notifications of a job's end: e-mail received by a real SMTP server (aiosmtpd on
loopback) and webhooks received by a local HTTP server that checks their signature;
failed deliveries retried with back-off; never a secret in a message."""

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone
from django_q.models import Schedule

from plans import notify, runs
from plans.models import Delivery, ExportPlan, Notification

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.jobs]
SECRET = "whsec-test-0123456789"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    with socket.socket() as probe:  # a free port: the controller checks it by connecting
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield inbox
    controller.stop()


@pytest.fixture
def receiver():
    """An HTTP server that answers 500 to the first POST, then 200, keeping what it got."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            got.append(
                {
                    "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "valid": hmac.compare_digest(expected, self.headers["X-ADU-Signature"]),
                }
            )
            self.send_response(500 if len(got) == 1 else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()


def in_process(job):
    from exports.engine.run import run_job

    run_job(job.pk)


def test_a_failed_job_is_mailed_and_posted_signed_and_a_failed_post_is_retried(
    source_db, owner, smtp, receiver, settings
):
    url, got = receiver
    settings.PORTAL_URL = "https://adu.example.org"
    source_db.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    connection = source_db.connection(owner)
    plan = ExportPlan.create(
        name="nightly", owner=owner, connection=connection, every_minutes=60,
        definition={"tables": ["public.t", "public.gone"]},
        notify=[("email", "dba@example.org", ""), ("webhook", url, SECRET)],
        notify_on=Notification.When.PROBLEMS,
    )  # fmt: skip
    run = runs.run_plan(plan, start=in_process)
    assert run.job.__class__.objects.get(pk=run.job_id).status == "complete_with_errors"
    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.notification.channel for d in deliveries] == ["email", "webhook"]
    assert {d.event for d in deliveries} == {"errors"}

    for delivery in deliveries:
        notify.deliver(delivery.pk)
    [(to, mail)] = smtp.messages
    assert to == ["dba@example.org"]
    assert f"Subject: ADU: Job {run.job_id} of plan nightly ended with errors" in mail
    assert "public.gone" in mail and f"https://adu.example.org/jobs/{run.job_id}/" in mail
    password = connection.password
    assert password and password not in mail

    webhook = Delivery.objects.get(notification__channel="webhook")
    assert webhook.status == "pending" and webhook.tries == 1
    assert webhook.last_error == "the receiver answered 500"
    retry = Schedule.objects.get(name=f"adu-delivery-{webhook.pk}-1")
    assert retry.func == "plans.tasks.deliver" and retry.args == f"({webhook.pk},)"
    assert (
        timezone.now() + timedelta(seconds=20)
        < retry.next_run
        < timezone.now() + timedelta(seconds=40)
    )
    assert notify.deliver(webhook.pk)  # what the retry runs
    assert [g["valid"] for g in got] == [True, True]
    said = json.loads(got[-1]["body"])
    assert said["event"] == "job.errors" and said["plan"] == "nightly"
    assert said["job"]["id"] == run.job_id and said["job"]["tables_failed"] == 1
    assert got[-1]["headers"]["x-adu-delivery"] == str(webhook.pk)
    assert SECRET not in got[-1]["body"].decode() and password not in got[-1]["body"].decode()
    assert Delivery.objects.get(pk=webhook.pk).status == "sent"

    # The same end is told once, however often the job is finished again.
    from exports.engine.run import finish_job

    finish_job(run.job_id)
    assert Delivery.objects.count() == 2


def test_only_the_ends_asked_for_are_told_and_a_user_hears_of_all_their_jobs(
    source_db, owner, smtp
):
    source_db.execute("CREATE TABLE t (id int);")
    connection = source_db.connection(owner)
    plan = ExportPlan.create(
        name="quiet", owner=owner, connection=connection, every_minutes=60,
        definition={"tables": ["public.t"]},
        notify=[("email", "only-failures@example.org", "")],
        notify_on=Notification.When.FAILURE,
    )  # fmt: skip
    Notification.objects.create(
        user=owner, channel="email", address="me@example.org", when="always"
    )
    runs.run_plan(plan, start=in_process)
    [delivery] = Delivery.objects.all()
    assert delivery.notification.address == "me@example.org" and delivery.event == "complete"


def test_a_delivery_that_keeps_failing_is_given_up_and_recorded(source_db, owner):
    source_db.execute("CREATE TABLE t (id int);")
    plan = ExportPlan.create(
        name="p", owner=owner, connection=source_db.connection(owner), every_minutes=60,
        definition={"tables": ["public.t"]},
        notify=[("webhook", "http://127.0.0.1:9/nothing-listens", SECRET)],
        notify_on=Notification.When.ALWAYS,
    )  # fmt: skip
    runs.run_plan(plan, start=in_process)
    [delivery] = Delivery.objects.all()
    for _ in range(len(notify.BACKOFF) + 1):
        assert not notify.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.tries == len(notify.BACKOFF) + 1
    assert "cannot be reached" in delivery.last_error
    assert Schedule.objects.filter(func="plans.tasks.deliver").count() == len(notify.BACKOFF)
    assert not notify.deliver(delivery.pk) and Delivery.objects.get().tries == delivery.tries


def test_a_broker_that_cannot_take_the_notification_does_not_fail_the_job(
    source_db, owner, monkeypatch, caplog
):
    """A fault injected where the broker is called: the job ends as it would, logged."""
    source_db.execute("CREATE TABLE t (id int);")
    plan = ExportPlan.create(
        name="p", owner=owner, connection=source_db.connection(owner), every_minutes=60,
        definition={"tables": ["public.t"]},
        notify=[("email", "dba@example.org", "")], notify_on=Notification.When.ALWAYS,
    )  # fmt: skip

    def down(*args, **kwargs):
        raise ConnectionError("the broker is down")

    monkeypatch.setattr("django_q.tasks.async_task", down)
    run = runs.run_plan(plan, start=in_process)
    assert run.job.__class__.objects.get(pk=run.job_id).status == "complete"
    assert "notifications of job" in caplog.text
