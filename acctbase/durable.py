"""Writes that survive a crash: a file replaced atomically, new files and the
directories naming them flushed to disk, or a whole filesystem synced at once.

A service acknowledges a message, or records that it was sent, only after these
return: a power cut right after must not lose what was promised. Plain ``write``
and ``rename`` leave both the data and the new names in the page cache.
"""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional


class TemporaryFileError(OSError):
    """No temporary file could be made next to the target (its directory refuses it)."""


def fsync_path(path: str) -> None:
    """Flush one file or directory to disk (a directory: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Concurrent fsync calls share journal commits (ext4/xfs group commit), so syncing the
# files of a batch from several threads costs little more than syncing one.
_SYNC_THREADS = 8
_sync_pool: Optional[ThreadPoolExecutor] = None


def fsync_all(paths: list[str]) -> None:
    """``fsync_path`` every path, several at a time when there are several."""
    global _sync_pool
    if len(paths) <= 1:
        _fsync_each(paths)
        return
    if _sync_pool is None:
        _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="fsync")
    chunks = [paths[i::_SYNC_THREADS] for i in range(min(_SYNC_THREADS, len(paths)))]
    for future in [_sync_pool.submit(_fsync_each, chunk) for chunk in chunks]:
        future.result()


def _fsync_each(paths: list[str]) -> None:
    for path in paths:
        fsync_path(path)


def sync_new(paths: Iterable[str], root: str) -> None:
    """Flush new files (or directories) under ``root`` and every directory naming them.

    The files first, then each directory between them and ``root`` (``root``
    included, deepest first): a directory's fsync is what makes a name created or
    renamed into it survive a crash.
    """
    root = os.path.abspath(root)
    files = [os.path.abspath(path) for path in paths]
    directories = {root}
    for path in files:
        parent = os.path.dirname(path)
        while parent.startswith(root + os.sep) and parent not in directories:
            directories.add(parent)
            parent = os.path.dirname(parent)
    fsync_all(files)
    fsync_all(sorted(directories, key=lambda d: (-d.count(os.sep), d)))


def write_atomic(path: str, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one.

    The temporary file is in the same directory (rename is atomic only within one
    file system), gets ``mode`` whatever the umask, is synced before the rename, and
    the directory is synced after it so the rename survives a crash. Raises
    ``TemporaryFileError`` when the directory refuses the temporary file, another
    ``OSError`` when writing or renaming fails (the temporary file is removed).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise TemporaryFileError(exc.errno, exc.strerror, directory) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except OSError:
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise
    _sync_directory_if_possible(directory)


def _sync_directory_if_possible(directory: str) -> None:
    try:
        fsync_path(directory)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename itself is done


def _kernel_at_least(major: int, minor: int) -> bool:
    system = os.uname()
    numbers = re.match(r"(\d+)\.(\d+)", system.release)
    return system.sysname == "Linux" and numbers is not None and \
        (int(numbers[1]), int(numbers[2])) >= (major, minor)


def _load_syncfs() -> Optional[Callable[[int], int]]:
    """libc's ``syncfs``, where it reports write-back errors (Linux 5.8 and later).

    Older kernels return 0 from ``syncfs`` even when writing back failed, so there
    a lost write would go unnoticed: those keep syncing file by file.
    """
    if not _kernel_at_least(5, 8):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _load_syncfs()


def open_for_syncfs(path: str) -> Optional[int]:
    """A descriptor on ``path``'s filesystem for ``syncfs``; None where syncfs is unusable.

    Open it before writing: ``syncfs`` reports the write-back errors that happened
    since the descriptor was opened.
    """
    return os.open(path, os.O_RDONLY) if _syncfs is not None else None


def syncfs(fd: int) -> None:
    """Write back everything waiting on ``fd``'s filesystem; OSError if any of it failed."""
    assert _syncfs is not None
    if _syncfs(fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"syncfs: {os.strerror(error)}")
