"""Crash-safe writes: a reader (or a run resumed after a kill or a full disk) sees the previous content or the
complete new one, never a part. New content goes to a hidden temporary sibling, is fsynced, and replaces the final
name by one rename, itself made durable by fsyncing the parent folder."""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from liteframe.errors import InputError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` writes the whole file at `tmp`, which then replaces `path`; on an error `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


def atomic_folder(path: str | Path, write: Callable[[Path], None], names: Collection[str]) -> Path:
    """`write(tmp)` fills the empty folder `tmp` with files named in `names`; `tmp` then replaces the folder `path`,
    so files that belong together (weights and their config) change together. The previous folder is kept until the
    new one is in place; a crash between the two renames leaves no `path` and the previous folder in a hidden
    `.<name>.old-<pid>` sibling, never a mixed pair. A folder holding anything else is refused, not deleted."""
    path = Path(path).resolve()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: exists and is not a folder")
        other = sorted(p.name for p in path.iterdir() if p.name not in names)
        if other:
            raise InputError(f"{path}: holds {other[:3]} besides {sorted(names)}; save into a folder of its own")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, {path.name})
    tmp, old = (path.with_name(f".{path.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed save under the same process id
    tmp.mkdir()
    try:
        write(tmp)
        for file in tmp.iterdir():
            _fsync(file)
        _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)  # a stale copy from an earlier crash: `path` is newer
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-(?P<pid>\d+)$")


def remove_leftovers(folder: str | Path, names: Collection[str] | None = None) -> list[Path]:
    """Remove what writes killed part-way left in `folder`: the hidden `.<name>.tmp-<pid>` and `.<name>.old-<pid>`
    files and folders of `atomic_write` and `atomic_folder` whose process is gone (of the `names` given, else of
    any name). -> what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and (names is None or match["name"] in names) and not _alive(int(match["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (this process counts as alive: its own writes are in flight)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (Linux fsyncs a read-only descriptor, folders included)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def output_lock(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold the lock of the output `path` (a file or a folder) while the block runs, so that a second writer of the
    same output is refused in one line (`InputError`) instead of interleaving with the first. The lock is the
    kernel's `flock` on a hidden sibling `.<name>.lock`, so a holder that dies (even by SIGKILL) releases it; the
    file records the holder's pid and host for the message, and one left by a dead holder is simply taken over."""
    path = Path(path).resolve()
    lock = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+")  # noqa: SIM115  closed below; "a+" never truncates the holder's record
    except OSError as err:  # a read-only folder: refused before anything is loaded or written
        raise InputError(f"{what} {path}: cannot write there ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(f"{what} {path} is in use by {holder}: wait for it to finish, or choose another "
                             "output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield lock
    finally:
        handle.close()  # releases the flock; the file stays, and the next holder rewrites its record
