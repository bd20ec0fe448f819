"""Settings: every value comes from an ADU_* environment variable, with defaults that run anywhere.

The embedded defaults need no setup (SQLite under var/, the Django-Q2 ORM broker, keys
generated into var/ on first run). A malformed variable stops start-up with one sentence
naming it, never a traceback.
"""

import base64
import logging
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ

from adu_site.proxy import parse_allowed

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
log = logging.getLogger("adu.settings")


def _stop(message: str):
    # A traceback here would bury the one thing the operator must fix.
    sys.stderr.write(f"ADU cannot start: {message}\n")
    raise SystemExit(2)


def _read(name, cast, default):
    try:
        return cast(name, default=default)
    except Exception:
        _stop(f"{name}={os.environ.get(name)!r} is not a valid value.")


def _generated_secret(path: Path, make, loss: str = "stored passwords cannot be decrypted") -> str:
    """Read a secret from var/, or create it there on first run (mode 0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
        log.warning(
            "Generated %s. Keep it safe and back it up: without it %s. Set the "
            "environment variable in production.",
            path,
            loss,
        )
    return path.read_text().strip()


VAR_DIR = Path(_read("ADU_VAR_DIR", env.str, str(BASE_DIR / "var"))).resolve()
DEBUG = _read("ADU_DEBUG", env.bool, False)
ALLOWED_HOSTS = _read("ADU_ALLOWED_HOSTS", env.list, ["127.0.0.1", "localhost"])
HTTPS = _read("ADU_HTTPS", env.bool, False)

SECRET_KEY = os.environ.get("ADU_SECRET_KEY") or _generated_secret(
    VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50), "every login is lost"
)
if len(SECRET_KEY) < 50:
    _stop("ADU_SECRET_KEY must be at least 50 characters long.")


def _new_fernet_key() -> str:
    from cryptography.fernet import Fernet  # first run only (see _is_fernet_key)

    return Fernet.generate_key().decode()


def _is_fernet_key(key: str) -> bool:
    """What Fernet(key) checks (32 url-safe base64-encoded bytes), by the same decoding:
    importing cryptography here would cost every command's start-up 10 ms, and it is
    needed only when a stored secret is read or written (connections.crypto)."""
    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except ValueError:  # binascii.Error, or characters that are not ASCII
        return False


FERNET_KEYS = [
    key.strip()
    for key in (
        os.environ.get("ADU_FERNET_KEYS")
        or _generated_secret(VAR_DIR / "fernet_keys", _new_fernet_key)
    ).split(",")
    if key.strip()
]
for _key in FERNET_KEYS:
    if not _is_fernet_key(_key):
        _stop(
            "ADU_FERNET_KEYS must be a comma-separated list of Fernet keys "
            "(32 url-safe base64-encoded bytes each); one of them is not."
        )
if not FERNET_KEYS:
    _stop("ADU_FERNET_KEYS is empty; give at least one Fernet key.")

# The key of the `hash` masking: the same key gives the same tokens in every job (joins
# across exports work); whoever holds it can test guesses, so keep it like a password.
MASKING_KEY = os.environ.get("ADU_MASKING_KEY") or _generated_secret(
    VAR_DIR / "masking_key",
    lambda: secrets.token_urlsafe(32),
    "hashed columns of new exports no longer match those of earlier ones",
)
if len(MASKING_KEY) < 32:
    _stop("ADU_MASKING_KEY must be at least 32 characters long.")


def _database(url: str) -> dict:
    try:
        config = env.db_url_config(url)
    except Exception:
        config = {}
    if not config.get("ENGINE"):
        _stop(
            "ADU_DATABASE_URL is not a database URL ADU understands; use "
            "postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:////absolute/path.db."
        )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # The web process and the task cluster write at once: WAL lets readers go on,
        # IMMEDIATE takes the write lock up front, and busy_timeout waits for it instead
        # of failing with "database is locked".
        # Exports run tables in threads, which an in-memory test database cannot serve;
        # one file per test run, so that two runs side by side do not share it.
        config["TEST"] = {
            "NAME": str(Path(config["NAME"]).with_suffix(f".test-{os.getpid()}.sqlite3"))
        }
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
            ),
        }
    else:
        config.setdefault("CONN_MAX_AGE", 60)
        config.setdefault("CONN_HEALTH_CHECKS", True)
    return config


DATABASES = {
    "default": _database(
        os.environ.get("ADU_DATABASE_URL") or f"sqlite:///{VAR_DIR / 'adu.sqlite3'}"
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EXPORT_ROOT = Path(_read("ADU_EXPORT_ROOT", env.str, str(VAR_DIR / "exports"))).resolve()
# Where exports carried across the gap are put to be loaded: a load reads a folder under
# this or under EXPORT_ROOT, nowhere else.
RECEIVE_ROOT = Path(_read("ADU_RECEIVE_ROOT", env.str, str(VAR_DIR / "received"))).resolve()
# Where bundles made from the portal or the API are written (adu_bundle --to chooses).
BUNDLE_ROOT = Path(_read("ADU_BUNDLE_ROOT", env.str, str(VAR_DIR / "bundles"))).resolve()
# Notifications (plans.notify): e-mail through the site's SMTP server, and the portal's
# address for links in messages ("" leaves links out).
EMAIL_HOST = _read("ADU_EMAIL_HOST", env.str, "localhost")
EMAIL_PORT = _read("ADU_EMAIL_PORT", env.int, 25)
EMAIL_HOST_USER = _read("ADU_EMAIL_USER", env.str, "")
EMAIL_HOST_PASSWORD = _read("ADU_EMAIL_PASSWORD", env.str, "")
EMAIL_USE_TLS = _read("ADU_EMAIL_STARTTLS", env.bool, False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = _read("ADU_EMAIL_FROM", env.str, "adu@localhost")
PORTAL_URL = _read("ADU_PORTAL_URL", env.str, "")

# Carrying exports across the gap (transfer/). This instance's Ed25519 signing key (PEM
# text; generated into var/ on first use when unset); the public keys, as PEM files,
# whose signatures the far side accepts; its age identity (AGE-SECRET-KEY-1...), which
# decrypts bundles encrypted to it (generated into var/ on first use when unset).
SIGNING_KEY = os.environ.get("ADU_SIGNING_KEY", "")
TRUSTED_KEYS = [p for p in _read("ADU_TRUSTED_KEYS", env.str, "").split(os.pathsep) if p]
AGE_IDENTITY = os.environ.get("ADU_AGE_IDENTITY", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "accounts",
    "connections",
    "exports",
    "loads",
    "transfer",
    "plans",
    "quality",
    "audit",
    "api",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # API errors raised outside its views (no such URL, wrong method) as JSON, not HTML.
    "api.middleware.JsonErrors",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "audit.middleware.CurrentRequest",
    "adu_site.security.ContentSecurityPolicy",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Brute-force protection: a username and address pair is locked after this many failed
# logins, for this many minutes (an ADU Admin unlocks it sooner in the admin's Access
# attempts, or with `manage.py axes_reset_username USERNAME`).
AXES_FAILURE_LIMIT = _read("ADU_LOGIN_FAILURES", env.int, 5)
AXES_COOLOFF_TIME = timedelta(minutes=_read("ADU_LOCKOUT_MINUTES", env.int, 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
# The client's address, for these lockouts and for the audit trail alike: X-Forwarded-For
# counts only when the direct peer is one of these proxies (addresses or networks; gunicorn
# trusts the same list for X-Forwarded-Proto). Empty, the default: never.
FORWARDED_ALLOW_IPS = _read("ADU_FORWARDED_ALLOW_IPS", env.list, [])
try:
    parse_allowed(FORWARDED_ALLOW_IPS)
except ValueError:
    _stop("ADU_FORWARDED_ALLOW_IPS must be a comma-separated list of IP addresses or networks.")
AXES_CLIENT_IP_CALLABLE = "adu_site.proxy.client_address"

ROOT_URLCONF = "adu_site.urls"
WSGI_APPLICATION = "adu_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.role",
            ],
            # The number filter writes every count of rows and bytes the same way.
            "builtins": ["adu_site.templatetags.numbers"],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = _read("ADU_TIME_ZONE", env.str, "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = _read("ADU_SESSION_AGE", env.int, 8 * 3600)
SESSION_SAVE_EVERY_REQUEST = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    # The container's health check asks over plain HTTP from inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Django-Q2, for tasks that run for hours.
# - timeout: a table task may run this long before the cluster kills it (a day: tables
#   of billions of rows). Raise it for larger tables.
# - retry: the broker hands an unacknowledged task to another worker after this long. It
#   must exceed `timeout`, or a long export would be started twice while the first runs.
#   Recovery from a dead worker does not wait for it: heartbeats do that (below).
# - max_attempts 1: a task that failed is not run again by the broker; ADU decides what
#   to retry (a dead worker's table once, a user's retry as a new attempt).
# - workers: tables that one cluster exports at once, across all jobs.
TASK_TIMEOUT = _read("ADU_TASK_TIMEOUT", env.int, 24 * 3600)
Q_CLUSTER = {
    "name": "adu",
    "workers": _read("ADU_WORKERS", env.int, 2),
    "timeout": TASK_TIMEOUT,
    "retry": TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Tasks",
}
# A running table or job whose heartbeat is older than this has lost its worker: the
# table is queued again once, then failed. Heartbeats come several times per timeout.
HEARTBEAT_TIMEOUT = _read("ADU_HEARTBEAT_TIMEOUT", env.int, 120)
HEARTBEAT_SECONDS = max(1, min(10, HEARTBEAT_TIMEOUT // 6))
# Source sessions: checks, previews and discovery stop after this many seconds, and no
# session waits longer than this for another session's lock (a job may set its own).
# A role's own stricter limits stay; only the export's long reads lift the first.
SOURCE_STATEMENT_TIMEOUT = _read("ADU_SOURCE_STATEMENT_TIMEOUT", env.int, 30)
SOURCE_LOCK_TIMEOUT = _read("ADU_SOURCE_LOCK_TIMEOUT", env.int, 30)
# Validation: uniqueness checks remember at most this many keys (8 bytes each).
VALIDATION_MAX_KEYS = _read("ADU_VALIDATION_MAX_KEYS", env.int, 10_000_000)
# API requests per token (or per session user) and minute; more get a 429. 0: no limit.
API_RATE_PER_MINUTE = _read("ADU_API_RATE_PER_MINUTE", env.int, 120)
# A table is flagged when, against its last successful export, its rows fall by this
# fraction or grow by this fraction, or a column's share of nulls rises by these points.
ANOMALY_ROWS_DROP = _read("ADU_ANOMALY_ROWS_DROP", env.float, 0.5)
ANOMALY_ROWS_GROWTH = _read("ADU_ANOMALY_ROWS_GROWTH", env.float, 2.0)
ANOMALY_NULL_POINTS = _read("ADU_ANOMALY_NULL_POINTS", env.float, 20.0)
JOB_LOG_DIR = Path(_read("ADU_JOB_LOG_DIR", env.str, str(VAR_DIR / "logs" / "jobs"))).resolve()
# The broker: the ORM broker (the metadata database, nothing to run) or Redis, for
# several `qcluster` hosts. Redis has no acknowledgements (a task taken by a cluster that
# dies is lost): table heartbeats and the sweep recover the work, the claim keeps it single.
# queue_limit 1: a busy cluster holds at most two tasks it cannot start yet (one queued,
# one in its pusher's hand) instead of workers**2, which an idle host could run meanwhile
# and which a killed cluster would take with it.
BROKER = _read("ADU_BROKER", env.str, "orm").strip().lower()
REDIS_URL = os.environ.get("ADU_REDIS_URL", "")
if BROKER == "redis":
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        _stop(
            "ADU_BROKER=redis needs ADU_REDIS_URL set to a Redis URL such as "
            "redis://:PASSWORD@HOST:6379/0."
        )
    Q_CLUSTER["redis"] = REDIS_URL
elif BROKER == "orm":
    if REDIS_URL:
        _stop(
            "ADU_REDIS_URL is set but ADU_BROKER is not 'redis'; set ADU_BROKER=redis or unset it."
        )
    Q_CLUSTER["orm"] = "default"
    # Seconds between looks at an empty queue (a read of one small table): a job, and the
    # helper tasks its coordinator queues, start within this. At 0.1 an idle cluster takes
    # 2.0% of a core (1.2% at 0.2, 4.3% at 0.05) and a job of 300 small tables ends 13-16%
    # sooner than at 0.2 (measured). The Redis broker waits without looking.
    Q_CLUSTER["poll"] = 0.1
else:
    _stop("ADU_BROKER must be 'orm' or 'redis'.")
Q_CLUSTER["queue_limit"] = 1


def _example_secrets() -> dict:
    """The public placeholder values of docker/adu.env.example, by variable."""
    values = {}
    try:
        text = (BASE_DIR / "docker" / "adu.env.example").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#") and value.strip():
            values[name.strip()] = value.strip()
    return values


def _refuse_placeholders():
    """Production never runs on the example file's secrets, which anyone can read: each is
    refused by name, as is any value still marked CHANGE-ME."""
    example = _example_secrets()
    database = DATABASES["default"]
    in_use = [
        ("ADU_SECRET_KEY", "ADU_SECRET_KEY", SECRET_KEY),
        *(("ADU_FERNET_KEYS", "ADU_FERNET_KEYS", key) for key in FERNET_KEYS),
        ("ADU_MASKING_KEY", "", MASKING_KEY),
        (
            "The password in ADU_DATABASE_URL (POSTGRES_PASSWORD)",
            "POSTGRES_PASSWORD",
            database.get("PASSWORD") if database["ENGINE"] != "django.db.backends.sqlite3" else "",
        ),
        ("The password in ADU_REDIS_URL (REDIS_PASSWORD)", "REDIS_PASSWORD",
         urlsplit(REDIS_URL).password if REDIS_URL else ""),
    ]  # fmt: skip
    for label, example_name, value in in_use:
        value = str(value or "")
        marked = any(mark in value.upper() for mark in ("CHANGE-ME", "CHANGEME"))
        if value and (marked or value == example.get(example_name)):
            _stop(
                f"{label} is the placeholder of docker/adu.env.example; set a secret of "
                "your own (the example file says how to generate one)."
            )


if not DEBUG:
    _refuse_placeholders()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "adu_site.redaction.RedactSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
        "job_files": {
            "class": "exports.joblog.JobFileHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
    },
    "root": {
        "handlers": ["console", "job_files"],
        "level": _read("ADU_LOG_LEVEL", env.str, "INFO"),
    },
    # axes announces itself at every start and logs each failed login at INFO; the audit
    # trail holds those, so only its warnings reach the console.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
