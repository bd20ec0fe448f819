"""adu_verify on the receiving side: passes on an intact export, fails precisely on damage."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from exports.engine.run import run_job
from exports.jobs import create_job
from exports.manifest import CHECKSUM_KEY, checksum
from transfer.signing import sha256_of


@pytest.fixture
def export_folder(owner, source_db):
    source_db.execute(
        "CREATE TABLE a AS SELECT i, md5(i::text) AS h FROM generate_series(1, 5000) i"
    )
    source_db.execute("CREATE TABLE b AS SELECT generate_series(1, 300) AS i")
    job = run_job(create_job(owner, source_db.connection(owner), out="shipment").pk)
    assert job.status == "complete"
    return job.folder()


def verify(folder):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_verify", str(folder), "--json", stdout=out)
    report = json.loads(out.getvalue())
    return exit_info.value.code, {t["table"]: t["status"] for t in report["tables"]}


@pytest.mark.django_db(transaction=True)
def test_an_intact_export_passes(export_folder):
    assert verify(export_folder) == (0, {"a": "ok", "b": "ok"})
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("adu_verify", str(export_folder), "--json", stdout=out)
    assert json.loads(out.getvalue())["unlisted"] == []
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("adu_verify", str(export_folder), stdout=out)
    assert "2 table(s) checked, 0 not ok." in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_file_the_manifest_does_not_list_fails_the_check(export_folder):
    # A part an earlier attempt left, or a file put there on the way: a reader of the
    # table's folder would take its rows for the table's.
    (export_folder / "public" / "a").mkdir()
    (export_folder / "public" / "a" / "part-00001.parquet").write_bytes(b"old rows")
    (export_folder / "notes.txt").write_text("added on the way")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_verify", str(export_folder), "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert exit_info.value.code == 1 and report["ok"] is False
    assert report["unlisted"] == ["notes.txt", "public/a/part-00001.parquet"]
    assert {t["table"]: t["status"] for t in report["tables"]} == {"a": "ok", "b": "ok"}
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("adu_verify", str(export_folder), stdout=out)
    text = out.getvalue()
    assert "public/a/part-00001.parquet" in text and "not in the manifest" in text
    assert "2 table(s) checked, 0 not ok. 2 file(s) not in the manifest." in text


def _resealed(folder, edit):
    """The manifest edited and sealed again, as someone who knows the format could: its
    checksum proves no more than that it was written whole."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    path.write_text(json.dumps({**body, CHECKSUM_KEY: checksum(body)}))


@pytest.mark.django_db(transaction=True)
def test_paths_that_leave_the_folder_are_never_read(export_folder, tmp_path):
    secret = tmp_path / "outside" / "secret.parquet"
    secret.parent.mkdir()
    secret.write_bytes(b"SECRET-OUTSIDE-CONTENT")
    # a.parquet's entry points out of the folder; b's file is swapped for a link out.
    b = export_folder / "public" / "b.parquet"
    b.unlink()
    b.symlink_to(secret)
    # A linked folder: what lies behind it is not listed either.
    (export_folder / "public" / "elsewhere").symlink_to(secret.parent)
    _resealed(
        export_folder,
        lambda m: m["tables"][0]["files"][0].update(path="../../outside/secret.parquet"),
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_verify", str(export_folder), "--json", stdout=out)
    text = out.getvalue()
    report = json.loads(text)
    assert exit_info.value.code == 1
    assert {t["table"]: t["status"] for t in report["tables"]} == {"a": "missing", "b": "missing"}
    assert "SECRET-OUTSIDE-CONTENT" not in text
    # The folder's own a.parquet is no longer listed; the links are names, never followed.
    assert report["unlisted"] == ["public/a.parquet", "public/elsewhere"]


@pytest.mark.django_db(transaction=True)
def test_a_flipped_byte_is_corrupt(export_folder):
    path = export_folder / "public" / "a.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert verify(export_folder) == (1, {"a": "corrupt", "b": "ok"})


@pytest.mark.django_db(transaction=True)
def test_hashes_taken_while_writing_stand_for_reading_the_file_again(export_folder):
    """A receiver hashes each file as it writes it: a hash given is the file's, right or
    wrong, and the others are read."""
    from exports.verify import verify as check

    a, b = export_folder / "public" / "a.parquet", export_folder / "public" / "b.parquet"
    right = {"public/a.parquet": sha256_of(a)}
    wrong = {"public/a.parquet": sha256_of(b)}

    def statuses(report):
        return {t["table"]: t["status"] for t in report["tables"]}

    assert statuses(check(export_folder, right)) == {"a": "ok", "b": "ok"}
    assert statuses(check(export_folder, wrong)) == {"a": "corrupt", "b": "ok"}
    b.write_bytes(b"x" + b.read_bytes()[1:])  # not in the hashes given: read, and found
    assert statuses(check(export_folder, right)) == {"a": "ok", "b": "corrupt"}


@pytest.mark.django_db(transaction=True)
def test_a_deleted_file_is_missing(export_folder):
    (export_folder / "public" / "b.parquet").unlink()
    assert verify(export_folder) == (1, {"a": "ok", "b": "missing"})


@pytest.mark.django_db(transaction=True)
def test_a_truncated_file_is_corrupt(export_folder):
    path = export_folder / "public" / "a.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    assert verify(export_folder) == (1, {"a": "corrupt", "b": "ok"})


@pytest.mark.django_db(transaction=True)
def test_an_edited_manifest_is_refused_in_one_sentence(export_folder):
    path = export_folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"][0]["rows_written"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="was edited after ADU wrote it"):
        call_command("adu_verify", str(export_folder))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "content, message",
    [('{"tables": [', "is truncated or is not JSON"), ('{"hello": 1}', "is not an ADU manifest")],
)
def test_a_foreign_or_truncated_manifest_is_refused(export_folder, content, message):
    (export_folder / "manifest.json").write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("adu_verify", str(export_folder))


def test_a_folder_without_manifest_is_refused(tmp_path):
    with pytest.raises(CommandError, match="There is no manifest.json in"):
        call_command("adu_verify", str(tmp_path))


def test_the_manifest_reads_a_line_for_each_key_and_each_table_whatever_the_names():
    from exports import manifest

    tables = [
        {"schema": "s", "table": 'we"ird\nname\u2028', "rows_written": 1},
        {"schema": "\\", "table": "{}[]", "columns": [{"name": "é", "b": 1, "a": 2}]},
    ]
    # Keys before and after "tables" in sorted order: the checksum is taken in that order.
    head = {"format": manifest.FORMAT, "zeta": {"b": 1, "a": [2]}, "options": {}}
    text = "".join(manifest.lines(head, iter(tables)))
    read = json.loads(text)
    assert read == {**head, "tables": tables, "manifest_sha256": read["manifest_sha256"]}
    assert read["manifest_sha256"] == manifest.checksum({**head, "tables": tables})
    lines = text.split("\n")
    assert lines[0] == "{" and lines[-2] == "}"
    assert [json.loads(line.strip().rstrip(",")) for line in lines[5:7]] == tables
    for head in ({}, {"zeta": 1}, {"a": 1}):
        for tables in ([], [{"t": 1}]):
            read = json.loads("".join(manifest.lines(head, tables)))
            assert read["manifest_sha256"] == manifest.checksum({**head, "tables": tables})
