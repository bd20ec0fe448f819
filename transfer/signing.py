"""Detached signatures of ADU's files (a manifest, a bundle's index): FILE.sig beside FILE.

The key signs a small statement, not the file: the file's name and SHA-256, the key's
fingerprint and the time. The file is read once to hash it, so a manifest of any size is
signed with flat memory, and a file altered after signing no longer has the signed hash.

    {"format": "adu-signature/1", "file": "manifest.json", "sha256": "...",
     "key": "<fingerprint>", "signed_at": "...", "signature": "<base64 Ed25519>"}

The signature is over the statement without "signature", as JSON with sorted keys and no
spaces (json.dumps(..., sort_keys=True, separators=(",", ":"))).
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adu_site.durable import write_atomically

# transfer.keys (cryptography) is imported where a key is used: the manifest's writer and
# adu_verify import this module, and commands start without cryptography.

FORMAT = "adu-signature/1"
SUFFIX = ".sig"
_CHUNK = 8 << 20


class BadSignature(Exception):
    """A file whose signature does not prove who made it; the message says why."""


@dataclass(frozen=True)
class Signer:
    name: str  # the trusted key file's name
    fingerprint: str

    def __str__(self):
        return f"{self.name} (key {self.fingerprint[:16]})"


def signature_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(statement: dict) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def sign(path: Path, sha256: str | None = None) -> Path:
    """Write path's signature beside it, whole or not at all; its path."""
    from transfer import keys

    key = keys.signing_key()
    statement = {
        "format": FORMAT,
        "file": path.name,
        "sha256": sha256 or sha256_of(path),
        "key": keys.fingerprint(key),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    statement["signature"] = base64.b64encode(key.sign(_canonical(statement))).decode()
    target = signature_path(path)
    write_atomically(target, [(json.dumps(statement, indent=1) + "\n").encode()])
    return target


def check(path: Path, trusted: list) -> Signer:
    """The signer of `path` among the trusted keys (transfer.keys.TrustedKey), or
    BadSignature saying what is wrong."""
    from cryptography.exceptions import InvalidSignature

    signed = signature_path(path)
    if not path.is_file():
        raise BadSignature(f"There is no {path.name} in {path.parent}.")
    if not signed.is_file():
        raise BadSignature(
            f"{path.name} is not signed ({signed.name} is missing): it cannot be told from a "
            "forgery. Ask the exporting side for an export from an ADU that signs."
        )
    try:
        statement = json.loads(signed.read_text(encoding="utf-8"))
        signature = base64.b64decode(statement.pop("signature"), validate=True)
        fingerprint = statement["key"]
        if statement.get("format") != FORMAT or not isinstance(fingerprint, str):
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
        raise BadSignature(f"{signed.name} is not an ADU signature.") from None
    match = next((t for t in trusted if t.fingerprint == fingerprint), None)
    if match is None:
        raise BadSignature(
            f"{path.name} is signed by key {fingerprint[:16]}..., which is not among the "
            f"trusted keys ({', '.join(t.name for t in trusted) or 'none given'})."
        )
    try:
        match.key.verify(signature, _canonical(statement))
    except InvalidSignature:
        raise BadSignature(
            f"{signed.name} does not verify with {match.name}: the signature was altered or forged."
        ) from None
    if statement.get("file") != path.name or statement.get("sha256") != sha256_of(path):
        raise BadSignature(
            f"{path.name} was altered after {match.name} signed it: its SHA-256 is not the "
            "signed one."
        )
    return Signer(match.name, fingerprint)
