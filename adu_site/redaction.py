"""Removes secrets from log records and error text before they are written anywhere."""

import logging
import re

# libpq connection strings and URLs both carry passwords; so do psycopg2 error messages
# that echo the DSN.
_PATTERNS = [
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[redacted]@"),
]


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Text with every known secret and every password-looking value replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
