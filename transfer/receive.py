"""Receiving a bundle on the far side: prove it, unpack it once, check the export.

In order, stopping at the first refusal with one sentence: the index's signature by a
trusted key; not received before (by the manifest's checksum: a bundle received again is
not read again); every volume present with the index's size and SHA-256 (the missing and
damaged ones named together, so that only those are carried again). Only then do the age
and tar parsers see the volumes: they read nothing a trusted key did not sign. The stream
is decrypted and unpacked into a hidden folder under RECEIVE_ROOT, each file hashed and
synced as it is written; the manifest must be signed by a trusted key and be the one the
index names, and the export must check out as adu_verify checks it. Only then is the
folder renamed to its final name and the receipt recorded.
"""

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import IntegrityError

from adu_site.durable import DurableFile, fsync_dir, sync_folders
from audit.models import AuditEvent, record
from exports import verify as export_verify
from exports.models import MANIFEST
from transfer import age, keys, signing, streams
from transfer.bundle import COPY_BYTES, FORMAT, INDEX_SUFFIX, BundleRefused
from transfer.models import Receipt


@dataclass
class Received:
    receipt: Receipt
    new: bool  # False: received before, not unpacked again

    def __str__(self):
        r = self.receipt
        if not self.new:
            return (
                f"{r.bundle} was already received on {r.received_at:%Y-%m-%d %H:%M} UTC as "
                f"folder {r.folder}; it was not unpacked again."
            )
        return (
            f"{r.bundle}: signed by {r.signed_by}, {r.volumes} volume(s), {r.tables} table(s), "
            f"{r.rows} rows, checked; unpacked into {r.folder}."
        )


def indexes(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleRefused(f"There is no folder {folder}.")
    found = sorted(folder.glob(f"*{INDEX_SUFFIX}"))
    if not found:
        raise BundleRefused(f"There is no bundle index (*{INDEX_SUFFIX}) in {folder}.")
    return found


def receive(index_path: Path, trusted: list[keys.TrustedKey], user=None) -> Received:
    """Receive the bundle of `index_path`; BundleRefused (recorded on the audit trail)."""
    try:
        try:
            return _receive(Path(index_path), trusted, user)
        except OSError as error:  # a full disk, a volume unreadable: a sentence, no traceback
            raise BundleRefused(
                f"Receiving failed on the disk ({error.strerror or error}): nothing was kept; "
                "free the space or mend the media and receive it again."
            ) from None
    except (BundleRefused, signing.BadSignature, keys.BadKey, export_verify.BadManifest) as error:
        record(
            AuditEvent.Action.RECEIVE_REJECT,
            user=user,
            bundle=Path(index_path).name,
            error=str(error),
        )
        raise BundleRefused(str(error)) from None


def _receive(index_path: Path, trusted, user) -> Received:
    if not trusted:
        raise BundleRefused(
            "No key is trusted: give the exporting side's public key with --trust KEYFILE or "
            "ADU_TRUSTED_KEYS."
        )
    signer = signing.check(index_path, trusted)
    index = _read_index(index_path)
    earlier = Receipt.objects.filter(manifest_sha256=index["manifest_sha256"]).first()
    if earlier:
        return Received(earlier, new=False)
    _check_volumes(index_path.parent, index)
    root = Path(settings.RECEIVE_ROOT)
    final = root / index["bundle"]
    if final.exists():
        raise BundleRefused(f"{final} is already there and is not a receipt of this bundle.")
    partial = root / f".{index['bundle']}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a receive that died
    partial.mkdir(parents=True)
    try:
        hashed = _unpack(index_path.parent, index, partial)
        folder = partial / index["folder"]
        manifest = export_verify.read_manifest(folder)
        if manifest[export_verify.CHECKSUM_KEY] != index["manifest_sha256"]:
            raise BundleRefused(
                "The manifest inside the bundle is not the one its index names: the bundle "
                "was put together from two exports."
            )
        manifest_signer = signing.check(folder / MANIFEST, trusted)
        report = export_verify.verify(folder, hashed)
        if not report["ok"]:
            bad = [f"{t['schema']}.{t['table']} ({t['status']})" for t in report["tables"]]
            bad = [b for b in bad if not b.endswith("(ok)")] + report["unlisted"]
            raise BundleRefused(f"The unpacked export does not check out: {', '.join(bad)}.")
        os.replace(folder, final)
        fsync_dir(root)  # the files were synced, and their folders, before the rename
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    try:
        receipt = Receipt.objects.create(
            manifest_sha256=index["manifest_sha256"],
            bundle=index["bundle"],
            folder=str(final),
            job_id=index.get("job_id"),
            signed_by=str(manifest_signer)
            + ("" if manifest_signer == signer else f"; bundled by {signer}"),
            volumes=len(index["volumes"]),
            bytes=index["bytes"],
            encrypted=bool(index.get("encryption")),
            tables=len(manifest["tables"]),
            rows=sum(t.get("rows_written") or 0 for t in manifest["tables"]),
            received_by=user if getattr(user, "pk", None) else None,
        )
    except IntegrityError:  # received at the same moment by another process
        shutil.rmtree(final, ignore_errors=True)
        return Received(Receipt.objects.get(manifest_sha256=index["manifest_sha256"]), new=False)
    record(
        AuditEvent.Action.RECEIVE,
        user=user,
        obj=receipt,
        bundle=receipt.bundle,
        signed_by=receipt.signed_by,
        folder=receipt.folder,
    )
    return Received(receipt, new=True)


def _read_index(path: Path) -> dict:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        names = [v["name"] for v in index["volumes"]]
        ok = (
            index.get("format") == FORMAT
            and all(_plain_name(n) for n in [*names, index["folder"], index["bundle"]])
            and all(
                isinstance(v["bytes"], int) and isinstance(v["sha256"], str)
                for v in index["volumes"]
            )
            and isinstance(index["manifest_sha256"], str)
            and index.get("encryption") in (None, "age")
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise BundleRefused(f"{path.name} is not an ADU bundle index.")
    return index


def _plain_name(name) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
    )


def _check_volumes(folder: Path, index: dict):
    """Every volume there with the index's size and SHA-256, before the tar and age
    parsers read a byte of them: they only ever see what a trusted key signed. The
    missing and the damaged are named together, so that only those are carried again."""
    missing, damaged = [], []
    for volume in index["volumes"]:
        path = folder / volume["name"]
        if not path.is_file():
            missing.append(volume["name"])
        elif path.stat().st_size != volume["bytes"] or signing.sha256_of(path) != volume["sha256"]:
            damaged.append(volume["name"])
    if missing or damaged:
        said = []
        if missing:
            said.append(f"missing: {', '.join(missing)}")
        if damaged:
            said.append(
                f"damaged or from another bundle (size or SHA-256 not the index's): {', '.join(damaged)}"
            )
        raise BundleRefused(f"Volumes {'; '.join(said)}. Carry those again.")


class _Joined:
    """The volumes read one after the other as one stream."""

    def __init__(self, paths: list[Path]):
        self._paths = list(paths)
        self._file = None

    def read(self, size: int = -1) -> bytes:
        size = COPY_BYTES if size is None or size < 0 else size
        while self._paths or self._file:
            if self._file is None:
                self._file = open(self._paths.pop(0), "rb")
            data = self._file.read(size)
            if data:
                return data
            self._file.close()
            self._file = None
        return b""

    def close(self):
        if self._file:
            self._file.close()


def _unpack(folder: Path, index: dict, into: Path) -> dict[str, str]:
    """The volumes read (and decrypted) by a thread of their own, ahead of the tar's
    unpacking: each half has a core. The SHA-256 of the files written, by their path in
    the export's folder."""
    joined = _Joined([folder / v["name"] for v in index["volumes"]])
    read = joined.read
    if index.get("encryption") == "age":
        identity = keys.identity()
        decrypting = None

        def read():
            nonlocal decrypting
            decrypting = decrypting or age.Decrypting(joined, identity)
            return decrypting.read(COPY_BYTES)

    ahead = streams.Ahead(read, name="adu-receive-read")
    try:
        hashed = _extract(ahead, index, into)
        while ahead.read(COPY_BYTES):  # past the tar's end: age checks its last chunk there
            pass
    except age.AgeError as error:
        raise BundleRefused(
            f"The bundle cannot be decrypted with this instance's age identity: {error}."
        ) from None
    finally:
        ahead.close()
        joined.close()
    return hashed


def _extract(stream, index: dict, into: Path) -> dict[str, str]:
    """Regular files under the export's folder name only: no links, devices, absolute
    paths or `..` (tarfile's "data" filter, and the folder's name checked here). Each file
    is hashed as it is written and is on the disk when this returns; their SHA-256 by
    their path in the export's folder."""
    hashed = {}
    try:
        # A small stream buffer: tarfile's stream mode copies what it holds on each read.
        with tarfile.open(fileobj=stream, mode="r|", bufsize=64 << 10) as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if (
                    member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE)  # not sparse either
                    or len(parts) < 2
                    or parts[0] != index["folder"]
                    or ".." in parts
                ):
                    raise BundleRefused(
                        f"The bundle holds {member.name!r}, which is not a file of its export."
                    )
                tarfile.data_filter(member, str(into))
                hashed["/".join(parts[1:])] = _write_member(tar, member, into.joinpath(*parts))
    except (tarfile.TarError, EOFError) as error:
        raise BundleRefused(f"The bundle's volumes do not make a whole export ({error}).") from None
    sync_folders(into)
    return hashed


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = DurableFile(path)
    except (FileExistsError, NotADirectoryError):
        raise BundleRefused(
            f"The bundle holds {member.name!r} twice, or under a file of the same name."
        ) from None
    digest = hashlib.sha256()
    source = tar.extractfile(member)
    try:
        while data := source.read(COPY_BYTES):
            digest.update(data)
            file.write(data)
    except BaseException:
        file.discard()
        raise
    file.close()
    return digest.hexdigest()
