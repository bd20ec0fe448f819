"""Vertica's errors in one sentence for the user: what to fix, never a secret."""

import socket

from vertica_python import errors as vertica_errors

from adu_site.redaction import redact
from connections.drivers.base import DoesNotFit


def explain(error: BaseException, connection, table: str = "") -> str:
    """One sentence telling the user what went wrong and what to fix; never a secret."""
    where = f"{connection.host}:{connection.port}"
    text = str(getattr(error, "message", None) or error).strip()
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(error, DoesNotFit):
        return f"Column {error.column} holds a value ADU cannot store exactly: {error.reason}."
    if isinstance(error, vertica_errors.SSLNotSupported):
        return f"The server at {where} does not support TLS: set sslmode to 'prefer' or 'disable'."
    if isinstance(error, (socket.timeout, TimeoutError)) or text in (
        "timed out",
        "The read operation timed out",
    ):
        return _no_answer(connection, where)
    wrong_password = f"Wrong user name or password for '{connection.username}' on {where}."
    lost = (
        f"The connection to {where} was lost while exporting {table or 'the table'}; retry the job."
    )
    checks = [
        ("Invalid username or password", wrong_password),
        ("authentication failed", wrong_password),
        (
            f'Database "{connection.database}" does not exist',
            f"Database '{connection.database}' does not exist on {where}.",
        ),
        ("Failed to establish a connection", None),
        (
            "CERTIFICATE_VERIFY_FAILED",
            f"The TLS certificate of {where} could not be verified against this connection's "
            "CA certificate: upload the CA that signed it, or set sslmode to 'require'.",
        ),
        (
            "Ancient History Mark",
            "Vertica purged the job's epoch before this table was read (its Ancient "
            "History Mark moved on): raise HistoryRetentionTime, or retry the job.",
        ),
        ("Execution canceled", "The export was cancelled."),
        ("Connection closed by Vertica", lost),
        ("Socket connection broken", lost),
    ]
    if sqlstate == "3D000":
        return f"Database '{connection.database}' does not exist on {where}."
    if sqlstate in ("42V01", "42P01") or isinstance(error, vertica_errors.MissingRelation):
        return "The table does not exist (dropped or renamed?)."
    if sqlstate == "42501" or isinstance(error, vertica_errors.PermissionDenied):
        return f"User '{connection.username}' lacks permission: {_first_line(text)}."
    for needle, message in checks:
        if needle in text:
            if needle == "Failed to establish a connection":
                return _unreachable(connection, where)
            if message:
                return message
    return redact(_first_line(text) or type(error).__name__, (connection.password or "",))


def _unreachable(connection, where: str) -> str:
    """vertica-python says only that no address answered: find out why, in one sentence."""
    try:
        socket.getaddrinfo(connection.host, connection.port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"Unknown host '{connection.host}': check the host name."
    try:
        with socket.create_connection(
            (connection.host, connection.port), timeout=connection.connect_timeout
        ):
            pass
    except ConnectionRefusedError:
        return (
            f"Connection refused by {where}: check that the server runs and listens on that port."
        )
    except TimeoutError:
        return _no_answer(connection, where)
    except OSError as error:
        return f"Cannot reach {where}: {error.strerror or error}."
    return f"Could not connect to {where}; it accepts connections now: retry."


def _no_answer(connection, where: str) -> str:
    return (
        f"No answer from {where} within {connection.connect_timeout} s: "
        "check the host, port and firewall."
    )


def _first_line(text: str) -> str:
    # A server error reads "Severity: ERROR, Message: ..., Sqlstate: ...": keep the message.
    if "Message: " in text:
        text = text.split("Message: ", 1)[1].split(", Sqlstate:", 1)[0]
    return text.splitlines()[0].rstrip(".") if text else ""
