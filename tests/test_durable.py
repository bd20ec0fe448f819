"""Files on the disk before anything vouches for them (adu_site.durable): flushed by a thread
of their own while they are written, fsynced at close, never over a file that exists, and
gone when discarded or when writing them failed."""

import errno
import os
import signal
import threading

import pytest

from adu_site import durable
from adu_site.durable import DurableFile, write_atomically


@pytest.fixture
def syncs(monkeypatch):
    """Every fdatasync and fsync: (the call, the thread's name, the file's path)."""
    seen = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def recorded(real, name):
        def call(fd):
            seen.append((name, threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
            return real(fd)

        return call

    monkeypatch.setattr(os, "fdatasync", recorded(real_fdatasync, "fdatasync"))
    monkeypatch.setattr(os, "fsync", recorded(real_fsync, "fsync"))
    monkeypatch.setattr(durable, "FLUSH_BYTES", 4096)
    return seen


def test_a_file_is_flushed_while_it_is_written_and_synced_at_its_close(tmp_path, syncs):
    path = tmp_path / "data.bin"
    file = DurableFile(path)
    for _ in range(8):
        file.write(b"x" * 4096)
    file.close()
    assert path.read_bytes() == b"x" * 8 * 4096
    flushes = [s for s in syncs if s[0] == "fdatasync"]
    assert flushes and all(s[1].startswith("adu-flush") and s[2] == str(path) for s in flushes)
    assert syncs[-1] == ("fsync", threading.current_thread().name, str(path))
    file.close()  # a second close does nothing
    assert len(syncs) == len(flushes) + 1


def test_a_file_that_exists_is_never_written_over(tmp_path):
    path = tmp_path / "kept.bin"
    path.write_bytes(b"kept")
    with pytest.raises(FileExistsError):
        DurableFile(path)
    assert path.read_bytes() == b"kept"


def test_a_failed_flush_is_raised_by_close_and_a_discarded_file_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "FLUSH_BYTES", 10)

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    path = tmp_path / "data.bin"
    file = DurableFile(path)
    file.write(b"y" * 100)
    with pytest.raises(OSError, match="Input/output"):
        file.close()
    file.discard()  # what a writer does after a failure: no second error, no file
    assert not path.exists()


def test_write_atomically_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")

    def parts():
        yield b"new, half"
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, parts())
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]
    write_atomically(path, [b"new"])
    assert path.read_text() == "new"


def test_a_forked_child_flushes_with_a_thread_of_its_own(tmp_path, monkeypatch):
    """A worker forked after its parent flushed a file (Django-Q2's cluster forks) would
    wait forever on the parent's thread, which the child does not have."""
    monkeypatch.setattr(durable, "FLUSH_BYTES", 10)
    parent = DurableFile(tmp_path / "parent.bin")
    parent.write(b"p" * 100)
    parent.close()
    pid = os.fork()
    if pid == 0:  # the child: exits 0 only if its file was flushed and closed
        try:
            signal.alarm(20)  # killed rather than left waiting
            child = DurableFile(tmp_path / "child.bin")
            child.write(b"c" * 100)
            child.close()
            os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child.bin").read_bytes() == b"c" * 100
