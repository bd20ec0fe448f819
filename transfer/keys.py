"""The keys of carrying exports across the gap.

The export side signs with its Ed25519 signing key: each manifest and each bundle's index
(transfer.signing). The far side trusts public keys it was handed, as PEM files, and names
a signer by the file it trusts it from. Bundles are encrypted to the far side's age
identity (X25519): its recipient ("age1...") is handed the other way.

A key's fingerprint is the SHA-256 of its 32 raw bytes, in hex: what a person compares
when a key is handed over.
"""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from transfer import age

log = logging.getLogger("adu.transfer")

SIGNING_KEY_FILE = "signing_key.pem"
RETIRED_FOLDER = "retired_signing_keys"  # keys rotated out: their public halves stay printable
IDENTITY_FILE = "age_identity.txt"


class BadKey(Exception):
    """A key file or setting that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TrustedKey:
    name: str  # the file it was trusted from
    key: Ed25519PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_private(text: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadKey(f"{where} is not a PEM private key without a passphrase.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"{where} is not an Ed25519 key.")
    return key


def signing_key() -> Ed25519PrivateKey:
    """This instance's signing key: ADU_SIGNING_KEY, or var/signing_key.pem, made on first
    use with a warning to back it up."""
    if settings.SIGNING_KEY:
        return _read_private(settings.SIGNING_KEY.encode(), "ADU_SIGNING_KEY")
    path = Path(settings.VAR_DIR) / SIGNING_KEY_FILE
    if not path.exists():
        try:
            _write_secret(path, _private_pem(Ed25519PrivateKey.generate()))
        except FileExistsError:
            pass  # made by another process just now
        else:
            log.warning(
                "Generated %s, the key that signs this instance's manifests. Keep it safe and "
                "back it up: without it the far side cannot tell new exports from forgeries "
                "until it trusts a new key. Hand its public key (manage.py adu_keys public) "
                "to the far side. Set ADU_SIGNING_KEY in production.",
                path,
            )
    return _read_private(path.read_bytes(), str(path))


def retired_keys() -> list[Ed25519PrivateKey]:
    folder = Path(settings.VAR_DIR) / RETIRED_FOLDER
    return [_read_private(p.read_bytes(), str(p)) for p in sorted(folder.glob("*.pem"))]


def rotate() -> tuple[str, str]:
    """A new signing key in var/; the old one is kept among the retired, so that its public
    half can still be printed for manifests it signed. (old, new) fingerprints."""
    if settings.SIGNING_KEY:
        raise BadKey(
            "The signing key comes from ADU_SIGNING_KEY: set a new key there to rotate it."
        )
    old = signing_key()
    path = Path(settings.VAR_DIR) / SIGNING_KEY_FILE
    retired = Path(settings.VAR_DIR) / RETIRED_FOLDER / f"{fingerprint(old)}.pem"
    if not retired.exists():
        _write_secret(retired, _private_pem(old))
    new = Ed25519PrivateKey.generate()
    part = path.with_name(path.name + ".new")
    part.unlink(missing_ok=True)
    _write_secret(part, _private_pem(new))
    os.replace(part, path)
    return fingerprint(old), fingerprint(new)


def trusted_keys(paths: list[str] | None = None) -> list[TrustedKey]:
    """The public keys in the given PEM files (or ADU_TRUSTED_KEYS's)."""
    found = []
    for name in settings.TRUSTED_KEYS if paths is None else paths:
        path = Path(name)
        try:
            text = path.read_bytes()
        except OSError as error:
            raise BadKey(
                f"The trusted key file {name} cannot be read ({error.strerror})."
            ) from None
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise BadKey(
                f"{name} is not a PEM public key (print one with manage.py adu_keys public)."
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise BadKey(f"{name} is not an Ed25519 public key.")
        found.append(TrustedKey(path.name, key))
    return found


def identity():
    """This instance's age identity: ADU_AGE_IDENTITY, or var/age_identity.txt, made on
    first use."""

    text = settings.AGE_IDENTITY
    where = "ADU_AGE_IDENTITY"
    if not text:
        path = Path(settings.VAR_DIR) / IDENTITY_FILE
        where = str(path)
        if not path.exists():
            try:
                _write_secret(path, (str(age.Identity.generate()) + "\n").encode())
            except FileExistsError:
                pass
            else:
                log.warning(
                    "Generated %s, the key that decrypts bundles encrypted to this instance. "
                    "Keep it safe and back it up: without it such bundles cannot be opened. "
                    "Hand its recipient (manage.py adu_keys recipient) to the exporting side. "
                    "Set ADU_AGE_IDENTITY in production.",
                    path,
                )
        text = path.read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    try:
        return age.Identity.from_str(lines[0])
    except (IndexError, ValueError):
        raise BadKey(f"{where} is not an age identity (AGE-SECRET-KEY-1...).") from None


def recipient(text: str):
    """An age recipient ("age1...") as typed, or read from the file it names."""

    value = text.strip()
    if not value.startswith("age1") and Path(value).is_file():
        lines = [ln.strip() for ln in Path(value).read_text().splitlines()]
        value = next((ln for ln in lines if ln and not ln.startswith("#")), "")
    try:
        return age.Recipient.from_str(value)
    except ValueError:
        raise BadKey(
            "The recipient is not an age public key (age1...) nor a file holding one: "
            "print the far side's with manage.py adu_keys recipient."
        ) from None
