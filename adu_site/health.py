"""`/healthz`: whether this portal can serve, for the container's HEALTHCHECK and load balancers.

It checks the metadata database, the task broker and a writable export root, needs no
login, and says only which part failed: no paths, hosts, versions or error text, which
would help an attacker more than an operator (the log has the detail).
"""

import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connections, transaction
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_q.conf import Conf

log = logging.getLogger("adu.health")
BROKER_TIMEOUT = 3  # seconds: a health check must answer before its caller gives up


@login_not_required
@never_cache
@require_safe
def healthz(request):
    failed = [name for name, check in CHECKS if not _passes(name, check)]
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})


def check_database():
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker():
    if Conf.ORM:
        # The ORM broker is a table of the metadata database: it must be there and readable.
        from django_q.models import OrmQ

        with transaction.atomic(using=Conf.ORM):
            OrmQ.objects.using(Conf.ORM).exists()
        return
    import redis

    client = redis.from_url(
        Conf.REDIS, socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT
    )
    try:
        if not client.ping():
            raise ConnectionError("Redis did not answer PING")
    finally:
        client.close()


def check_export_root():
    root = Path(settings.EXPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    # Create, write, flush and delete a file, as an export does (a full disk fails here).
    with tempfile.NamedTemporaryFile(dir=root, prefix=".healthz-") as probe:
        probe.write(b"ok")
        probe.flush()


CHECKS = [
    ("database", check_database),
    ("broker", check_broker),
    ("export_root", check_export_root),
]


def _passes(name, check) -> bool:
    try:
        check()
        return True
    except Exception as error:
        log.warning("health check: %s failed: %s: %s", name, type(error).__name__, error)
        return False
