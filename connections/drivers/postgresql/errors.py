"""PostgreSQL's errors in one sentence for the user: what to fix, never a secret, and never
source data (a message about a row may quote its values)."""

import re

import psycopg2
import psycopg2.errorcodes
from django.conf import settings

from adu_site.redaction import redact


def explain(error: BaseException, connection, table: str = "") -> str:
    """One sentence telling the user what went wrong and what to fix; never a secret.

    `table`, when the error met one table's export, is named where it helps."""
    text = str(error).strip()
    where = f"{connection.host}:{connection.port}"
    code = getattr(error, "pgcode", None)
    checks = [
        (
            "password authentication failed",
            f"Wrong user name or password for '{connection.username}' on {where}.",
        ),
        (
            "no password supplied",
            f"The server at {where} asks for a password and none is stored for this connection.",
        ),
        (
            "could not translate host name",
            f"Unknown host '{connection.host}': check the host name.",
        ),
        ("Name or service not known", f"Unknown host '{connection.host}': check the host name."),
        (
            "Connection refused",
            f"Connection refused by {where}: check that the server runs and listens on that port.",
        ),
        (
            "timeout expired",
            f"No answer from {where} within {connection.connect_timeout} s: check the host, port and firewall.",
        ),
        (
            "server does not support SSL",
            f"The server at {where} does not support SSL: set sslmode to 'prefer' or 'disable'.",
        ),
        (
            "no encryption",
            f"The server at {where} has no pg_hba.conf rule for this user and database "
            "without encryption: set sslmode to 'require', or ask the DBA to allow this address.",
        ),
        (
            "certificate verify failed",
            f"The certificate of the server at {where} is not signed by this connection's CA "
            "certificate (or has expired): upload the CA that signed it.",
        ),
        (
            "does not match host name",
            f"The server's certificate is not for the host name '{connection.host}': connect "
            "with the name on its certificate, or use sslmode verify-ca.",
        ),
        (
            "SSL off",
            f"The server at {where} requires SSL for this user: set sslmode to 'require' (or stricter).",
        ),
        (
            "no pg_hba.conf entry",
            f"The server at {where} does not allow this user, database or address (pg_hba.conf).",
        ),
        (
            "terminating connection due to administrator command",
            f"The database server ended the session exporting {table or 'the table'} "
            "(an administrator or a restart stopped it); retry the job.",
        ),
        (
            "server closed the connection unexpectedly",
            f"The connection to {where} was lost while exporting {table or 'the table'}; retry the job.",
        ),
        ("could not open relation with OID", "The table was dropped after the export started."),
        ("canceling statement due to user request", "The export was cancelled."),
        (
            "invalid snapshot identifier",
            "The job's snapshot ended before this table started; retry the job.",
        ),
    ]
    if code == "3D000" or f'database "{connection.database}" does not exist' in text:
        return f"Database '{connection.database}' does not exist on {where}."
    if code == "22021":
        return (
            "The table holds text that is not valid UTF-8 (a database with encoding "
            "SQL_ASCII accepts any bytes); ADU writes text only as UTF-8: correct the "
            "data at the source."
        )
    if code == "42P01":
        return "The table does not exist (dropped or renamed?)."
    if code == "55P03" or "due to lock timeout" in text:
        return (
            f"{table or 'The table'} is locked by another session (an ACCESS EXCLUSIVE lock: "
            "ALTER TABLE, TRUNCATE, DROP, VACUUM FULL, REINDEX or LOCK TABLE), and the lock "
            "was not released within the job's lock timeout; export it again once it is."
        )
    if code == "42501" and not _may_quote_data(error):
        return f"User '{connection.username}' lacks permission: {_first_line(text)}."
    for needle, message in checks:
        if needle in text:
            return message
    # Any other message may quote source data (see safe_reason): only its condition is told.
    if code and code.startswith("22"):
        return (
            f"The source could not compute a value of {table or 'the table'} "
            f"({_condition(code)}): check the job's filter or query against the data."
        )
    if code:  # while reading rows any other message may quote a value (see safe_reason)
        return f"The source stopped the export of {table or 'the table'}: {_condition(code)}."
    if isinstance(error, psycopg2.Error):
        # libpq's own text: several lines, the address again, in its terms. Only its reason
        # is kept (without a pgcode it quotes no source data), in one sentence that says
        # where and what to check.
        reason = _LIBPQ_PREFIX.sub("", _first_line(text))[:200]
        reason = redact(reason or type(error).__name__, (connection.password or "",))
        if table:
            return f"The link to {where} failed while exporting {table} ({reason}); retry the job."
        return (
            f"ADU could not connect to {where} ({reason}): check the host, port and SSL mode, "
            "and that the server runs and accepts this user from this machine."
        )
    return redact(_first_line(text) or type(error).__name__, (connection.password or "",))


def explain_load(error: BaseException, connection, table: str) -> str:
    """explain() for a load's session on its target, in one sentence: the same for the
    link and the login; for what happened to a table, the target's side of it. A message
    that may quote a row's values (a data exception, a key violation's DETAIL) is told by
    its condition and constraint only: the page and the log are not the table."""
    code = getattr(error, "pgcode", None) or ""
    text = str(error).strip()
    if not code or code[:2] in ("08", "28", "3D") or code == "42501":
        if "server closed the connection unexpectedly" in text:
            return (
                f"The connection to {connection.host}:{connection.port} was lost while "
                f"loading {table}; nothing of it was kept: load it again."
            )
        return explain(error, connection)
    if code == "57P01":
        return (
            f"The database server ended the session loading {table} (an administrator or a "
            "restart stopped it); nothing of it was kept: load it again."
        )
    if code == "55P03":
        return (
            f"{table} is locked by another session in the target, and the lock was not "
            "released within the lock timeout; load it again once it is."
        )
    diag = getattr(error, "diag", None)
    if code.startswith("23"):
        constraint = getattr(diag, "constraint_name", None)
        broken = f"constraint {constraint}" if constraint else "a constraint"
        return (
            f"The rows of {table} break {broken} in the target ({_condition(code)}); "
            "nothing of it was kept."
        )
    if code.startswith("22"):
        return (
            f"The target refused a value of {table} ({_condition(code)}); nothing of it was kept."
        )
    reason = _condition(code) if _may_quote_data(error) else _first_line(text)
    reason = reason.removeprefix("ERROR:").strip()
    return f"The target stopped the load of {table}: {reason}; nothing of it was kept."


def safe_reason(error: psycopg2.Error, reading_rows: bool = False) -> str:
    """The server's reason in one line, when its kind of message names only what the user
    typed or the server's limits; otherwise only the name of its condition: a query that
    fails on a row must not carry that row's data out in its message (a data exception
    quotes the failing value, bare or quoted; a function's RAISE says anything)."""
    if error.pgcode == "57014":
        return f"it ran longer than {settings.SOURCE_STATEMENT_TIMEOUT} s (ADU_SOURCE_STATEMENT_TIMEOUT)"
    if error.pgcode == "55P03":
        return "a table it reads is locked by another session (an ACCESS EXCLUSIVE lock)"
    if _may_quote_data(error) or (reading_rows and error.pgcode not in (None, "42501")):
        # Reading rows, even a "name" may be a value: 'x'::regclass fails with 42P01.
        return _condition(error.pgcode or "")  # a code on both paths here
    return " ".join((error.diag.message_primary or _first_line(str(error))).split()).rstrip(".")


# SQLSTATE classes whose messages name only objects, syntax or limits: syntax errors and
# access rules, unsupported features, resources, program limits, transaction state.
TELLING_CLASSES = ("42", "0A", "53", "54", "25")


def _may_quote_data(error: BaseException) -> bool:
    """Whether the error's message may carry source data: it is not of a telling class,
    or a function raised it (its context names the function; RAISE takes any SQLSTATE)."""
    code: str = getattr(error, "pgcode", None) or ""
    diag = getattr(error, "diag", None)
    return bool(code) and (code[:2] not in TELLING_CLASSES or bool(diag and diag.context))


def _condition(code: str) -> str:
    """'22008' -> 'datetime field overflow (SQLSTATE 22008)'."""
    try:
        name = psycopg2.errorcodes.lookup(code).lower().replace("_", " ")
    except KeyError:
        return f"SQLSTATE {code}"
    return f"{name} (SQLSTATE {code})"


_LIBPQ_PREFIX = re.compile(
    r'^connection to server (?:at|on socket) "[^"]*"(?: \([^)]*\))?(?:, port \d+)? failed: '
    r"(?:(?:FATAL|ERROR): +)?"
)


def _first_line(text: str) -> str:
    return text.splitlines()[0].rstrip(".") if text else ""
