"""Files mvcore writes: never half written, never taken as done when they are not, never
written by two commands at once.

- ``atomic_path(path)`` yields a temporary path in the same folder; when the block ends
  without an exception it is renamed over ``path`` (``os.replace``: atomic on POSIX and
  Windows), otherwise deleted. A crash, a kill or Ctrl-C never leaves a partial ``path``.
  ``write_text_atomically`` and ``write_json_atomically`` are the one-call forms.
- ``Manifest`` records what a set of outputs was made from (input files' sizes and
  modification times, the settings) and what they are (each output's size); it is written
  last, so "up to date" means "the manifest matches", never "the files exist and are newer".
- ``DirectoryLock`` holds an exclusive lock on a folder while a command writes into it; a
  second writer gets a ``BusyError`` naming the holder. The lock is an OS file lock
  (``fcntl.flock``), released by the OS when its process dies, even by ``kill -9``.
- ``writable_dir(path, what)`` creates an output folder or says in one line why it cannot.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mvcore.errors import BusyError, DataError

__all__ = [
    "LOCK_NAME",
    "DirectoryLock",
    "Manifest",
    "atomic_path",
    "writable_dir",
    "write_json_atomically",
    "write_text_atomically",
]

#: the lock file a command holds in a folder it writes into
LOCK_NAME = ".mvcore.lock"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block
    succeeds, delete it when it raises (module docstring). The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh hidden name (not mkstemp: its 0600 mode would stay on the renamed file); the
    # suffix keeps the extension, which some writers use to pick the format
    partial = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_path``."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_json_atomically(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` through ``atomic_path``."""
    write_text_atomically(path, json.dumps(value, indent=2) + "\n")


def writable_dir(path: str | Path, what: str) -> Path:
    """Create the output folder ``path`` (``what`` names it in messages, e.g. ``--out``) and
    check that files can be written in it; DataError in one line otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} {path} is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mvcore-write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{what} {path}: cannot write there ({reason}); choose a folder you "
                        "can write to") from None
    return path


# ----------------------------------------------------------------------------- manifest


def _describe_file(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass
class Manifest:
    """What outputs were made from and what they are (module docstring).

    ``inputs``: path -> ``{"size", "mtime_ns"}``; ``settings``: JSON values that change the
    outputs (model checkpoint, thresholds, ...); ``outputs``: path -> size in bytes."""

    inputs: dict[str, dict[str, int]]
    settings: dict[str, Any]
    outputs: dict[str, int]
    written: str = field(default="", compare=False)

    @classmethod
    def describe(cls, inputs: list[Path], settings: dict[str, Any],
                 outputs: list[Path]) -> Manifest:
        """The manifest of existing ``inputs`` and ``outputs`` now (settings as given)."""
        return cls(
            inputs={str(Path(p).resolve()): _describe_file(Path(p)) for p in inputs},
            settings=json.loads(json.dumps(settings, default=str)),
            outputs={str(Path(p).resolve()): Path(p).stat().st_size for p in outputs},
            written=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        )

    def write(self, path: str | Path) -> None:
        """Save as JSON (atomically): write it after every output is complete."""
        write_json_atomically(path, asdict(self))

    @classmethod
    def read(cls, path: str | Path) -> Manifest | None:
        """The manifest at ``path``; None when it is missing or unreadable (not complete)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(data["inputs"], data["settings"], data["outputs"],
                       data.get("written", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def matches(cls, path: str | Path, inputs: list[Path], settings: dict[str, Any],
                outputs: list[Path]) -> bool:
        """Whether the manifest at ``path`` describes exactly these inputs, settings and
        outputs as they are now: the outputs are complete and made from these inputs."""
        recorded = cls.read(path)
        if recorded is None or not all(Path(p).is_file() for p in [*inputs, *outputs]):
            return False
        return recorded == cls.describe(inputs, settings, outputs)


# ----------------------------------------------------------------------------- lock


class DirectoryLock:
    """An exclusive lock on ``folder`` for ``command`` (module docstring); use as a context
    manager. A second lock on the same folder, from any process, raises ``BusyError``."""

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder = Path(folder)
        self.command = command
        self.path = self.folder / LOCK_NAME
        self._handle: Any = None

    def acquire(self) -> DirectoryLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while held)
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BusyError(f"{self.folder} is in use by {holder}; wait until it finishes "
                            f"(or stop it) and run {self.command} again")
        handle.seek(0)
        handle.truncate()
        handle.write(f"mvcore {self.command} (pid {os.getpid()} on {socket.gethostname()}, "
                     f"since {datetime.datetime.now().isoformat(timespec='seconds')})")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            _unlock(self._handle)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: Any) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(handle: Any) -> None:
        with contextlib.suppress(OSError):
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(handle: Any) -> bool:
        """False when another process holds the lock; a file system that cannot lock at all
        (Lustre or NFS mounted without locking) is a DataError, not "in use"."""
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            handle.close()
            raise DataError(
                f"{Path(handle.name).parent}: cannot lock the folder ({exc.strerror or exc}): "
                "its file system does not support file locks (a Lustre or NFS mount without "
                "locking); write to a local or lock-capable folder (--out / --output)") from None

    def _unlock(handle: Any) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
