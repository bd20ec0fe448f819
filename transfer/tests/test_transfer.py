"""Carrying an export across the gap: signed manifests, bundles in volumes, receiving once.

A 3-table export from a real source database is bundled in volumes of 1 MB. The far side
is this process with its own RECEIVE_ROOT and trusted keys, and, once, a second ADU
instance: another settings set and var/ in a subprocess of its own.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from adu_site.durable import DurableFile
from audit.models import AuditEvent
from exports.models import MANIFEST
from transfer import age, keys, signing
from transfer.bundle import BundleRefused, make_bundle, parse_size
from transfer.models import Receipt
from transfer.receive import receive

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20


@pytest.fixture
def job(source_db, owner, export):
    source_db.execute(
        "CREATE TABLE small (id int PRIMARY KEY, name text);"
        "INSERT INTO small SELECT i, 'n' || i FROM generate_series(1, 100) i;"
        "CREATE TABLE empty_one (x int);"
        # md5 text barely compresses: the export spans several volumes of 1 MB.
        "CREATE TABLE big (id int, a text, b text);"
        "INSERT INTO big SELECT i, md5(i::text), md5((i * 7)::text)"
        " FROM generate_series(1, 60000) i;"
    )
    done = export(
        source_db.connection(owner), tables=["public.small", "public.empty_one", "public.big"]
    )
    assert done.status == "complete"
    return done


@pytest.fixture
def near_key(tmp_path):
    """The exporting instance's public key, as the far side keeps it."""
    path = tmp_path / "near.pem"
    path.write_text(keys.public_pem(keys.signing_key()))
    return path


@pytest.fixture
def trusted(near_key):
    return keys.trusted_keys([str(near_key)])


def other_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def reseal(folder: Path, change):
    """Edit the manifest and give it a right checksum again: what someone handling the
    media could do, short of the signing key."""
    from exports.manifest import CHECKSUM_KEY, checksum

    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    manifest[CHECKSUM_KEY] = checksum(body)
    path.write_text(json.dumps(manifest))


def verify_command(*args):
    with pytest.raises(SystemExit) as ended:
        call_command("adu_verify", *args)
    return ended.value.code


# -- Signed manifests ----------------------------------------------------------------------


def test_every_manifest_is_signed_and_adu_verify_names_the_signer(job, near_key, capsys):
    folder = job.folder()
    assert (folder / "manifest.json.sig").is_file()
    assert verify_command(str(folder), "--trust", str(near_key)) == 0
    out = capsys.readouterr().out
    assert f"Signed by near.pem (key {keys.fingerprint(keys.signing_key())[:16]})." in out
    assert "3 table(s) checked, 0 not ok." in out


def test_adu_verify_refuses_unsigned_unknown_and_altered_exports(job, near_key, tmp_path):
    folder = job.folder()
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(keys.public_pem(Ed25519PrivateKey.generate()))
    with pytest.raises(CommandError, match=r"signed by key [0-9a-f]{16}\.\.\., which is not "):
        call_command("adu_verify", str(folder), "--trust", str(stranger))

    reseal(folder, lambda m: m["tables"][0].update(source_rows=999))
    with pytest.raises(CommandError, match="was altered after near.pem signed it"):
        call_command("adu_verify", str(folder), "--trust", str(near_key))

    (folder / "manifest.json.sig").unlink()
    with pytest.raises(CommandError, match=r"manifest.json is not signed"):
        call_command("adu_verify", str(folder), "--trust", str(near_key))


def test_a_forged_signature_and_a_bad_key_file_are_one_sentence(job, near_key, tmp_path):
    folder = job.folder()
    signature = folder / "manifest.json.sig"
    statement = json.loads(signature.read_text())
    statement["sha256"] = "0" * 64  # claim another file, keep the old signature
    signature.write_text(json.dumps(statement))
    with pytest.raises(CommandError, match="does not verify with near.pem: the signature was"):
        call_command("adu_verify", str(folder), "--trust", str(near_key))
    signature.write_text("{not json")
    with pytest.raises(CommandError, match="manifest.json.sig is not an ADU signature"):
        call_command("adu_verify", str(folder), "--trust", str(near_key))
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    for bad, said in (
        (junk, "junk.pem is not a PEM public key"),
        (tmp_path / "no.pem", "cannot be read"),
    ):
        with pytest.raises(CommandError, match=said):
            call_command("adu_verify", str(folder), "--trust", str(bad))


def test_trusted_keys_from_the_setting(job, near_key, settings, capsys):
    settings.TRUSTED_KEYS = [str(near_key)]
    assert verify_command(str(job.folder())) == 0
    assert "Signed by near.pem" in capsys.readouterr().out


def test_a_rotated_key_still_verifies_what_it_signed(
    job, source_db, owner, export, tmp_path, capsys, settings
):
    old_public = tmp_path / "old.pem"
    old_public.write_text(keys.public_pem(keys.signing_key()))
    call_command("adu_keys", "rotate", "--as", owner.username)
    new_job = export(job.connection, tables=["public.small"])
    new_public = tmp_path / "new.pem"
    new_public.write_text(keys.public_pem(keys.signing_key()))

    assert verify_command(str(job.folder()), "--trust", str(old_public)) == 0
    with pytest.raises(CommandError, match="not among the trusted keys"):
        call_command("adu_verify", str(job.folder()), "--trust", str(new_public))
    assert verify_command(str(new_job.folder()), "--trust", str(new_public)) == 0
    # Both public keys, the rotated-out one too, for the far side to keep.
    capsys.readouterr()
    call_command("adu_keys", "public", "--all", "--as", owner.username)
    printed = capsys.readouterr()
    assert keys.public_pem(keys.signing_key()) in printed.out
    assert old_public.read_text() in printed.out
    assert "rotated out" in printed.err
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEY_ROTATION).count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEY_PRINT).count() == 1


# -- Bundles and receiving -----------------------------------------------------------------


def volumes_of(index: dict, folder: Path) -> list[Path]:
    return [folder / v["name"] for v in index["volumes"]]


def test_a_bundle_in_volumes_of_1_mb_is_received_once(job, trusted, tmp_path, settings, owner):
    index = make_bundle(job.folder(), tmp_path / "media", MB)
    assert len(index["volumes"]) >= 2
    assert all(v["bytes"] == MB for v in index["volumes"][:-1])
    assert 0 < index["volumes"][-1]["bytes"] <= MB
    assert not list((tmp_path / "media").glob("*.part"))

    first = receive(tmp_path / "media" / f"{index['bundle']}.index.json", trusted, owner)
    assert first.new
    folder = Path(first.receipt.folder)
    assert folder.parent == Path(settings.RECEIVE_ROOT)
    assert (folder / MANIFEST).read_bytes() == (job.folder() / MANIFEST).read_bytes()
    assert first.receipt.tables == 3 and first.receipt.rows == 60100
    assert "near.pem" in first.receipt.signed_by

    again = receive(tmp_path / "media" / f"{index['bundle']}.index.json", trusted, owner)
    assert not again.new
    assert str(again) == (
        f"{index['bundle']} was already received on "
        f"{first.receipt.received_at:%Y-%m-%d %H:%M} UTC as folder {folder}; it was not "
        "unpacked again."
    )
    assert Receipt.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RECEIVE).count() == 1
    # Known by its signed index alone: the media are not read again, even if cut short.
    volumes_of(index, tmp_path / "media")[-1].unlink()
    assert not receive(tmp_path / "media" / f"{index['bundle']}.index.json", trusted).new


def test_a_received_export_is_on_the_disk_before_its_receipt(
    job, trusted, tmp_path, settings, owner, monkeypatch
):
    """Every file and folder is fsynced before the folder takes its final name, and the
    receiving folder after: a crash cannot leave a receipt over files still in memory."""
    index = make_bundle(job.folder(), tmp_path / "media", MB)
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), Receipt.objects.exists()))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    received = receive(tmp_path / "media" / f"{index['bundle']}.index.json", trusted, owner)
    root = Path(settings.RECEIVE_ROOT)
    partial = root / f".{index['bundle']}.partial" / index["folder"]
    final = Path(received.receipt.folder)
    files = [p.relative_to(final) for p in final.rglob("*")]
    assert len([f for f in files if (final / f).is_file()]) == 2 + 3  # manifest, its signature
    assert {(str(partial / f), False) for f in files} | {(str(partial), False)} <= set(synced)
    assert synced[-1] == (str(root), False)


@pytest.mark.parametrize(
    "damage, said",
    [
        ("missing", r"Volumes missing: adu-job\d+-[0-9a-f]{12}\.002\. Carry those again\."),
        ("flipped", r"damaged or from another bundle .*\.002\. Carry those again\."),
        ("flipped, encrypted", r"damaged or from another bundle .*\.002\. Carry those again\."),
        ("two flipped", r"damaged or from another bundle [^:]*: \S+\.001, \S+\.00\d\. Carry"),
        ("flipped and missing", r"Volumes missing: \S+\.002; damaged [^:]*: \S+\.001\. Carry"),
        ("foreign", r"damaged or from another bundle .*\.001\. Carry those again\."),
        ("unknown signer", r"index.json is signed by key [0-9a-f]{16}\.\.\., which is not among"),
        ("unsigned", r"index.json is not signed"),
        ("index edited", r"index.json was altered after near.pem signed it"),
        ("manifest signer", r"manifest.json is signed by key [0-9a-f]{16}\.\.\., which is not"),
    ],
)
def test_a_bad_bundle_is_refused_in_one_sentence_and_nothing_is_unpacked(
    job, trusted, tmp_path, settings, owner, source_db, export, damage, said
):
    if damage == "manifest signer":  # an export signed by a key the far side does not trust
        settings.SIGNING_KEY = other_key_pem()
        signing.sign(job.folder() / MANIFEST)
        settings.SIGNING_KEY = ""
    media = tmp_path / "media"
    recipient = None
    if damage.endswith("encrypted"):
        far = age.Identity.generate()
        settings.AGE_IDENTITY, recipient = str(far), far.to_public()
    index = make_bundle(job.folder(), media, MB, recipient=recipient)
    path = media / f"{index['bundle']}.index.json"
    volumes = volumes_of(index, media)

    def flip(volume):
        data = bytearray(volume.read_bytes())
        data[1000] ^= 1  # the first file's tar header, or an encrypted chunk
        volume.write_bytes(bytes(data))

    if damage == "missing":
        volumes[1].unlink()
    elif damage.startswith("flipped"):
        flip(volumes[0] if damage == "flipped and missing" else volumes[1])
        if damage == "flipped and missing":
            volumes[1].unlink()
    elif damage == "two flipped":  # the unpacking stops at the first: the last is named too
        flip(volumes[0])
        flip(volumes[-1])
    elif damage == "foreign":
        other = export(job.connection, tables=["public.big"])
        other_index = make_bundle(other.folder(), tmp_path / "other", MB)
        volumes[0].write_bytes(volumes_of(other_index, tmp_path / "other")[0].read_bytes())
    elif damage == "unknown signer":
        settings.SIGNING_KEY = other_key_pem()
        signing.sign(path)
    elif damage == "unsigned":
        signing.signature_path(path).unlink()
    elif damage == "index edited":
        edited = json.loads(path.read_text())
        edited["volumes"][0]["sha256"] = "0" * 64
        path.write_text(json.dumps(edited))

    with pytest.raises(BundleRefused, match=said):
        receive(path, trusted, owner)
    assert Receipt.objects.count() == 0
    root = Path(settings.RECEIVE_ROOT)
    assert not root.exists() or list(root.iterdir()) == []
    rejected = AuditEvent.objects.get(action=AuditEvent.Action.RECEIVE_REJECT)
    assert rejected.details["bundle"] == path.name


def test_an_encrypted_bundle_leaves_nothing_readable_and_opens_only_with_its_identity(
    job, trusted, tmp_path, settings, owner
):
    far = age.Identity.generate()
    settings.AGE_IDENTITY = str(far)
    media = tmp_path / "media"
    index = make_bundle(job.folder(), media, MB, recipient=far.to_public())
    assert index["encryption"] == "age"
    plain = (job.folder() / MANIFEST).read_bytes()[:40]
    for volume in volumes_of(index, media):
        data = volume.read_bytes()
        assert b"PAR1" not in data and plain not in data and b"manifest.json" not in data
    assert volumes_of(index, media)[0].read_bytes().startswith(b"age-encryption.org/v1\n")

    settings.AGE_IDENTITY = str(age.Identity.generate())
    with pytest.raises(BundleRefused, match="cannot be decrypted with this instance's age"):
        receive(media / f"{index['bundle']}.index.json", trusted, owner)
    assert Receipt.objects.count() == 0

    settings.AGE_IDENTITY = str(far)
    received = receive(media / f"{index['bundle']}.index.json", trusted, owner)
    assert received.new and received.receipt.encrypted
    folder = Path(received.receipt.folder)
    assert call_command_ok("adu_verify", str(folder))


def call_command_ok(*args) -> bool:
    with pytest.raises(SystemExit) as ended:
        call_command(*args)
    return ended.value.code == 0


NOT_ITS_FILE = "which is not a file of its export"
TWICE = "twice, or under a file of the same name"


@pytest.mark.parametrize(
    "member, refusal",
    [
        ("../../outside.txt", NOT_ITS_FILE),
        ("link", NOT_ITS_FILE),
        ("/etc/cron.d/x", NOT_ITS_FILE),
        ("fifo", NOT_ITS_FILE),
        ("twice", TWICE),
        ("under a file", TWICE),
    ],
)
def test_a_bundle_whose_tar_leaves_its_folder_or_holds_no_plain_file_is_refused(
    job, trusted, tmp_path, settings, owner, member, refusal
):
    """A signed index over a volume someone made by hand (with the signing key: the checks
    behind the signature, in depth): a member that climbs out, a link, an absolute path,
    a FIFO, a file twice, a file under another's name."""
    index = make_bundle(job.folder(), tmp_path / "media", 64 * MB)
    [volume] = volumes_of(index, tmp_path / "media")
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(volume, "w", format=tarfile.PAX_FORMAT) as tar:
        if member == "link":
            info = tarfile.TarInfo(f"{index['folder']}/manifest.json")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        elif member == "fifo":
            info = tarfile.TarInfo(f"{index['folder']}/manifest.json")
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
        elif member.startswith("/"):
            tar.add(evil, member)
        elif member == "twice":
            tar.add(evil, f"{index['folder']}/manifest.json")
            tar.add(evil, f"{index['folder']}/manifest.json")
        elif member == "under a file":
            tar.add(evil, f"{index['folder']}/manifest.json")
            tar.add(evil, f"{index['folder']}/manifest.json/x")
        else:
            tar.add(evil, f"{index['folder']}/{member}")
    index["volumes"][0].update(bytes=volume.stat().st_size, sha256=signing.sha256_of(volume))
    path = tmp_path / "media" / f"{index['bundle']}.index.json"
    path.write_text(json.dumps(index))
    signing.sign(path)
    with pytest.raises(BundleRefused, match=refusal):
        receive(path, trusted, owner)
    root = Path(settings.RECEIVE_ROOT)
    assert not (root.parent / "outside.txt").exists() and not (root / "outside.txt").exists()
    assert not root.exists() or list(root.iterdir()) == []
    assert Receipt.objects.count() == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i["volumes"][0].update(name="../x.001"),
        lambda i: i.update(folder="/etc"),
        lambda i: i.update(format="tar"),
        lambda i: i["volumes"][0].update(bytes="12"),
        lambda i: i.update(encryption="rot13"),
    ],
)
def test_an_index_out_of_shape_is_refused_before_any_volume_is_read(
    job, trusted, tmp_path, owner, change
):
    index = make_bundle(job.folder(), tmp_path / "media", MB)
    path = tmp_path / "media" / f"{index['bundle']}.index.json"
    change(index)
    path.write_text(json.dumps(index))
    signing.sign(path)  # signed by the trusted key: the shape is checked all the same
    with pytest.raises(BundleRefused, match="is not an ADU bundle index"):
        receive(path, trusted, owner)


def test_bundle_command_inputs(job, owner, tmp_path, capsys):
    user = ["--as", owner.username]
    for size, said in (
        ("4X", "is not a size"),
        ("inf", "is not a size"),
        ("nan", "is not a size"),
        ("1k", "between 64 kB and 1024 TB"),
        ("0", "between"),
        ("-5G", "between"),
        ("1e30", "between"),
    ):
        with pytest.raises(CommandError, match=said):
            call_command(
                "adu_bundle",
                str(job.pk),
                "--to",
                str(tmp_path / "m"),
                f"--volume-size={size}",
                *user,
            )
    with pytest.raises(CommandError, match="not an age public key"):
        call_command(
            "adu_bundle", str(job.pk), "--to", str(tmp_path / "m"), "--encrypt-to", "bob", *user
        )
    with pytest.raises(CommandError, match="There is no job 999"):
        call_command("adu_bundle", "999", "--to", str(tmp_path / "m"), *user)
    call_command(
        "adu_bundle", str(job.pk), "--to", str(tmp_path / "m"), "--volume-size", "1M", *user
    )
    assert "volume(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="already holds this export's bundle"):
        call_command("adu_bundle", str(job.pk), "--to", str(tmp_path / "m"), *user)
    event = AuditEvent.objects.get(action=AuditEvent.Action.BUNDLE_CREATE)
    assert event.object_id == str(job.pk) and event.details["volumes"] >= 2


def test_parse_size():
    assert parse_size("4G") == 4 << 30
    assert parse_size("700M") == 700 << 20
    assert parse_size("1.5g") == 3 << 29
    assert parse_size("65536") == 65536
    assert parse_size("2MiB") == 2 << 20


def test_received_on_a_second_adu_instance(job, near_key, tmp_path, owner):
    """The far side as its own ADU: another var/ (database, keys), another receive root."""
    media = tmp_path / "media"
    call_command(
        "adu_bundle", str(job.pk), "--to", str(media), "--volume-size", "1M", "--as", owner.username
    )
    far = tmp_path / "far"
    env = {
        **os.environ,
        "ADU_VAR_DIR": str(far),
        "ADU_RECEIVE_ROOT": str(far / "received"),
        "ADU_TRUSTED_KEYS": str(near_key),
        "ADU_CLI_USER": "",
        "ADU_SIGNING_KEY": "",
        "DJANGO_SETTINGS_MODULE": "adu_site.settings",
    }
    for name in ("ADU_DATABASE_URL", "ADU_SECRET_KEY", "ADU_FERNET_KEYS", "ADU_MASKING_KEY"):
        env.pop(name, None)
    script = f"""
import django, io, sys
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
get_user_model().objects.create_superuser("far", "far@example.org", "pw-far-123")
for attempt in (1, 2):
    try:
        call_command("adu_receive", {str(media)!r})
    except SystemExit as ended:
        print("exit", ended.code)
"""
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.strip().splitlines()
    assert lines[0].startswith("adu-job") and "signed by near.pem" in lines[0], ran.stdout
    assert "checked; unpacked into " + str(far / "received") in lines[0]
    assert "was already received on" in lines[2] and "not unpacked again" in lines[2]
    assert lines[1] == lines[3] == "exit 0"
    [received] = (far / "received").iterdir()
    assert (received / MANIFEST).read_bytes() == (job.folder() / MANIFEST).read_bytes()


def test_an_instance_that_trusts_keys_loads_only_what_they_signed(
    job, near_key, tmp_path, settings, owner, target
):
    from exports.selection import BadRequest
    from loads.creation import create_load

    stranger = tmp_path / "stranger.pem"
    stranger.write_text(keys.public_pem(Ed25519PrivateKey.generate()))
    settings.TRUSTED_KEYS = [str(stranger)]
    with pytest.raises(BadRequest, match="which is not among the trusted keys"):
        create_load(owner, job.folder(), target)
    settings.TRUSTED_KEYS = [str(near_key)]
    assert create_load(owner, job.folder(), target).tables.count() == 3


def test_a_full_disk_while_unpacking_is_one_sentence_and_keeps_nothing(
    job, trusted, tmp_path, settings, owner, monkeypatch
):
    import errno

    index = make_bundle(job.folder(), tmp_path / "media", MB)

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DurableFile, "write", full)
    with pytest.raises(BundleRefused, match=r"Receiving failed on the disk \(No space left"):
        receive(tmp_path / "media" / f"{index['bundle']}.index.json", trusted, owner)
    root = Path(settings.RECEIVE_ROOT)
    assert not root.exists() or list(root.iterdir()) == []
    assert Receipt.objects.count() == 0
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RECEIVE_REJECT).count() == 1
