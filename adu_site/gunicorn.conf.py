"""Gunicorn settings of the portal: `gunicorn --config adu_site/gunicorn.conf.py adu_site.wsgi`.

Read from the environment like Django's settings (ADU_BIND, ADU_WEB_WORKERS,
ADU_WEB_TIMEOUT); a malformed value stops start-up with one sentence. Exports never run
here (the task cluster runs them), so requests are short and workers are few.
"""

import multiprocessing
import os
import sys

from gunicorn.glogging import Logger

from adu_site.redaction import RedactSecrets


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        sys.stderr.write(f"ADU cannot start: {name}={value!r} is not a positive whole number.\n")
        raise SystemExit(2)
    return int(value)


bind = os.environ.get("ADU_BIND", "0.0.0.0:8000")
# The usual 2 x CPUs + 1, capped: each worker holds a Django process (about 150 MB).
workers = _int("ADU_WEB_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 12))
# A page or a download that takes longer than this has hung: its worker is restarted.
timeout = _int("ADU_WEB_TIMEOUT", 120)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then, so that slow leaks never add up.
max_requests = 2000
max_requests_jitter = 200
# Heartbeat files in memory: a container's /tmp may be a slow overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Behind a TLS proxy: trust the X-Forwarded-* headers of the proxies listed there only
# (Django reads the same list for the client's address: adu_site/proxy.py). Empty, the
# default: no peer is trusted, not even one on this host.
forwarded_allow_ips = os.environ.get("ADU_FORWARDED_ALLOW_IPS", "")
# No runtime control socket (gunicornc): one less way in, and no file in a read-only home.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("ADU_LOG_LEVEL", "info").lower()
# Client, user, time, method, path (%(U)s: never the query string, which may carry a
# search or a token), protocol, status, bytes, duration in seconds, user agent. No
# Referer (it has query strings too), no cookies, no other headers.
access_log_format = '%(h)s - %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s "%(a)s"'


class RedactingLogger(Logger):
    """Gunicorn's logger with ADU's redaction filter on its handlers (tracebacks included)."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactSecrets())


logger_class = RedactingLogger
