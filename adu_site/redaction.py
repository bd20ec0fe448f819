"""Removes secrets from log records and error text before they are written anywhere."""

import logging
import re
import threading

_PATTERNS = [
    # password=..., secret: ..., token=... (libpq DSNs, config dumps, error messages)
    (
        re.compile(
            r"\b(password|passwd|pwd|secret|token|api_key)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)",
            re.I,
        ),
        r"\1\2[redacted]",
    ),
    # user:password@host in URLs, and :password@host (Redis URLs have no user)
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1[redacted]@"),
    # ADU's API tokens (api.models: "adu_" and 43 url-safe characters; a table name is
    # hardly ever exactly that), and any bearer credential in a logged header
    (re.compile(r"\badu_[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])"), "[redacted]"),
    (re.compile(r"(\bBearer\s+)\S+", re.I), r"\1[redacted]"),
    # Fernet tokens: what stored secrets look like at rest
    (re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}"), "[redacted]"),
]
_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str):
    """Redact this exact value everywhere from now on (called when a password is decrypted)."""
    if secret and len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Text with every known secret and every password-looking value replaced."""
    for secret in (*secrets, *sorted(_known, key=len, reverse=True)):
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """On every handler: the formatted message and any traceback are cleaned."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
