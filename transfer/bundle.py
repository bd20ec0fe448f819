"""Bundles: an export as numbered volumes of at most a chosen size, for removable media or a
one-way link, with a signed index; optionally encrypted to the far side's age key.

In the bundle's folder, for a bundle NAME (adu-job<id>-<the manifest's checksum, 12 digits>):

    NAME.index.json       what the bundle holds (below), signed in NAME.index.json.sig
    NAME.001, NAME.002... the volumes

The volumes are one stream cut into pieces: a POSIX tar of the export's folder (its
manifest, the manifest's signature and the Parquet files, under the folder's name),
encrypted as one age file (age-encryption.org/v1, X25519) when it is encrypted. Every
volume but the last is exactly the volume size. The index:

    {"format": "adu-bundle/1", "bundle": NAME, "folder": the export folder's name,
     "job_id": ..., "manifest_sha256": the manifest's checksum, "created_at": ...,
     "volume_size": ..., "encryption": "age" or null, "bytes": the volumes' total,
     "volumes": [{"name": "NAME.001", "bytes": ..., "sha256": ...}, ...]}

The stream passes through memory a megabyte at a time, whatever the export's size.
"""

import hashlib
import json
import os
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

from adu_site.durable import DurableFile, write_atomically
from exports.models import MANIFEST, MANIFEST_SIGNATURE
from transfer import age, signing, streams

FORMAT = "adu-bundle/1"
CHECKSUM_KEY = "manifest_sha256"  # exports.manifest's, which imports the export engine
INDEX_SUFFIX = ".index.json"
COPY_BYTES = 1 << 20
PROGRESS_SECONDS = 1.0
MIN_VOLUME = 64 << 10
MAX_VOLUME = 1 << 50


class BundleRefused(Exception):
    """The bundle cannot be made or received; the message says why in one sentence, and
    `field` names the input it is about, if one is."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def parse_size(text: str) -> int:
    """Bytes of a size as typed: "4G", "700M", "1.5G", "65536" (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in units and value[-1:] else ""
    try:
        size = int(float(value[: len(value) - len(unit)]) * units[unit])
    except (ValueError, OverflowError):  # "lots", "nan", "inf"
        raise BundleRefused(
            f"The volume size {text!r} is not a size: write it as 4G, 700M or a number of bytes.",
            "volume_size",
        ) from None
    if not MIN_VOLUME <= size <= MAX_VOLUME:
        raise BundleRefused(
            f"The volume size must be between {MIN_VOLUME // 1024} kB and {MAX_VOLUME >> 40} TB."
        )
    return size


def bundle_name(manifest: dict) -> str:
    return f"adu-job{manifest.get('job_id')}-{manifest[CHECKSUM_KEY][:12]}"


class _Volumes:
    """A file-like sink that cuts what is written into NAME.001, NAME.002... of at most
    `size` bytes each, hashing each as it goes. A volume is at its final name only once
    it is complete."""

    def __init__(self, folder: Path, name: str, size: int, progress=None):
        self.folder, self.name, self.size = folder, name, size
        self.progress, self.total, self._reported = progress, 0, time.monotonic()
        self.done: list[dict] = []
        self._file = None
        self._written = 0
        self._digest = None

    def _open(self):
        number = len(self.done) + 1
        self._path = self.folder / f"{self.name}.{number:03d}"
        part = self._path.with_name(self._path.name + ".part")
        part.unlink(missing_ok=True)  # left by a bundle that died
        self._file = DurableFile(part)
        self._written, self._digest = 0, hashlib.sha256()

    def _close(self):
        self._file.close()
        os.replace(self._file.name, self._path)
        self.done.append(
            {"name": self._path.name, "bytes": self._written, "sha256": self._digest.hexdigest()}
        )
        self._file = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            if self._file is None:
                self._open()
            piece = view[: self.size - self._written]
            self._file.write(piece)
            self._digest.update(piece)
            self._written += len(piece)
            view = view[len(piece) :]
            if self._written == self.size:
                self._close()
        self.total += len(data)
        if self.progress and time.monotonic() - self._reported >= PROGRESS_SECONDS:
            self._reported = time.monotonic()
            self.progress(self.total)
        return len(data)

    def flush(self):
        pass

    def tell(self) -> int:
        return self.total

    def finish(self) -> list[dict]:
        if self._file is not None:
            self._close()
        return self.done

    def remove(self):
        """Everything this bundle wrote so far: a failed bundle leaves nothing."""
        if self._file is not None:
            self._file.discard()
        for volume in self.done:
            (self.folder / volume["name"]).unlink(missing_ok=True)


def _members(folder: Path, manifest: dict) -> list[str]:
    files = [MANIFEST, MANIFEST_SIGNATURE]
    files += [e["path"] for t in manifest["tables"] for e in t.get("files", [])]
    return files


def _write_tar(sink, folder: Path, members: list[str]):
    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        # Who owned the files on this side is none of the far side's business.
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o644
        return info

    # Not the stream mode ("w|"): it gathers its output by concatenating bytes, a copy of
    # up to its buffer for every 16 kB. Written straight through, a megabyte at a time.
    with tarfile.open(
        fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BYTES
    ) as tar:
        for relative in members:
            tar.add(folder / relative, f"{folder.name}/{relative}", False, filter=anonymous)


def make_bundle(folder: Path, to: Path, volume_size: int, recipient=None, progress=None) -> dict:
    """Write the bundle of the export in `folder` into the folder `to`; its index.
    `progress(bytes)`, if given, is called about every second."""
    from exports import verify as export_verify  # pyarrow: in the worker, not the portal

    folder = Path(folder).resolve()
    manifest = export_verify.read_manifest(folder)
    report = export_verify.verify(folder)
    if not report["ok"]:
        bad = [f"{t['schema']}.{t['table']}" for t in report["tables"] if t["status"] != "ok"]
        raise BundleRefused(
            f"The export in {folder} does not check out (adu_verify: {', '.join(bad) or 'files not in its manifest'}): "
            "it is not bundled."
        )
    if not signing.signature_path(folder / MANIFEST).is_file():
        signing.sign(folder / MANIFEST)  # an export made before manifests were signed
    name = bundle_name(manifest)
    to = Path(to)
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BundleRefused(f"The folder {to} cannot be made ({error.strerror}).") from None
    index_path = to / f"{name}{INDEX_SUFFIX}"
    if index_path.exists():
        raise BundleRefused(f"{to} already holds this export's bundle ({index_path.name}).")
    volumes = _Volumes(to, name, volume_size, progress)
    # The volumes are hashed and written by a thread of their own, beside the tar (and
    # its encryption): each half has a core.
    behind = streams.Behind(volumes, name="adu-bundle-volumes")
    try:
        try:
            if recipient is None:
                _write_tar(behind, folder, _members(folder, manifest))
            else:
                _encrypted(behind, folder, _members(folder, manifest), recipient)
        finally:
            behind.close()
        done = volumes.finish()
    except BaseException:
        volumes.remove()
        raise
    index = {
        "format": FORMAT,
        "bundle": name,
        "folder": folder.name,
        "job_id": manifest.get("job_id"),
        "manifest_sha256": manifest[CHECKSUM_KEY],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "volume_size": volume_size,
        "encryption": "age" if recipient is not None else None,
        "bytes": sum(v["bytes"] for v in done),
        "volumes": done,
    }
    # The volumes' names reach the disk with the index's (one folder).
    write_atomically(index_path, [(json.dumps(index, indent=1) + "\n").encode()])
    signing.sign(index_path)  # until it is there, the far side refuses the bundle as unsigned
    return index


def _encrypted(volumes: _Volumes, folder: Path, members: list[str], recipient: age.Recipient):
    """The tar encrypted by age on its way to the volumes."""
    encrypting = age.Encrypting(volumes, recipient)
    _write_tar(_Counted(encrypting), folder, members)
    encrypting.close()


class _Counted:
    """A writer that says how much went through it (tarfile asks)."""

    def __init__(self, sink):
        self._sink, self._written = sink, 0

    def write(self, data) -> int:
        self._sink.write(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written
