"""mvcore.files: atomic writes, manifests, the folder lock and output-folder checks."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

import pytest

from mvcore.errors import BusyError, DataError
from mvcore.files import (
    LOCK_NAME,
    DirectoryLock,
    Manifest,
    atomic_path,
    writable_dir,
    write_text_atomically,
)


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    write_text_atomically(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old\n"  # the previous complete file survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]  # no partial left
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial.suffix == ".csv"
        partial.write_text("new\n")
    assert target.read_text() == "new\n"


def test_manifest_matches_only_complete_unchanged_outputs(tmp_path):
    source, out = tmp_path / "video.mp4", tmp_path / "out.csv"
    source.write_bytes(b"frames")
    out.write_text("a,b\n1,2\n")
    manifest = tmp_path / "manifest.json"
    settings = {"checkpoint": "best.ckpt", "threshold": 0.5}
    assert not Manifest.matches(manifest, [source], settings, [out])  # never written
    Manifest.describe([source], settings, [out]).write(manifest)
    assert Manifest.matches(manifest, [source], settings, [out])
    assert not Manifest.matches(manifest, [source], {**settings, "threshold": 0.6}, [out])
    out.write_text("a,b\n")  # truncated output
    assert not Manifest.matches(manifest, [source], settings, [out])
    out.write_text("a,b\n1,2\n")
    source.write_bytes(b"other frames")  # changed input
    assert not Manifest.matches(manifest, [source], settings, [out])
    manifest.write_text("{not json")
    assert not Manifest.matches(manifest, [source], settings, [out])


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    with DirectoryLock(tmp_path, "predict"):
        with pytest.raises(BusyError) as info, DirectoryLock(tmp_path, "predict"):
            pass
        message = str(info.value)
        assert str(tmp_path) in message and "mvcore predict (pid" in message
    with DirectoryLock(tmp_path, "predict"):  # released: free again
        pass


def test_lock_of_a_killed_process_is_free(tmp_path):
    code = ("import sys, time\nfrom mvcore.files import DirectoryLock\n"
            f"lock = DirectoryLock({str(tmp_path)!r}, 'train').acquire()\n"
            "print('locked', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="mvcore train"):
            DirectoryLock(tmp_path, "train").acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the OS drops the lock with the process
        try:
            DirectoryLock(tmp_path, "train").acquire().release()
            break
        except BusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert (tmp_path / LOCK_NAME).exists()  # a leftover file does not block anyone


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl file locks")
def test_a_file_system_without_locks_is_named_not_called_busy(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(DataError) as info:
        DirectoryLock(tmp_path, "predict").acquire()
    assert str(info.value) == (
        f"{tmp_path}: cannot lock the folder (No locks available): its file system does not "
        "support file locks (a Lustre or NFS mount without locking); write to a local or "
        "lock-capable folder (--out / --output)")


def test_writable_dir_names_the_problem(tmp_path):
    assert writable_dir(tmp_path / "a" / "b", "--out").is_dir()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(DataError, match=r"--out .*file.txt is a file, not a folder"):
        writable_dir(afile, "--out")
    with pytest.raises(DataError, match=r"--out .*cannot write there"):
        writable_dir(afile / "below", "--out")
