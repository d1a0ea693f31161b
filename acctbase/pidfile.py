"""Pidfiles that a crash cannot leave blocking the next start.

A pidfile naming a live process means "already running" and refuses the start with
a clear line; one naming a dead process (left by ``kill -9`` or a power cut) is
replaced. The file never exists without its PID: it is written under a temporary
name first, then linked into place (which fails if the name exists, so two starting
copies cannot both win) or, after daemonising, renamed over the old one. A reader never
sees it empty, which would look like a stale file, or to the launcher like a daemon that
gave up.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Callable, Optional

from acctbase.exceptions import PidfileError


def read_pid(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class PidFile:
    """Context manager: ``with PidFile(path): ...`` holds the pidfile for the block."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._owned = False

    def acquire(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise PidfileError(f"cannot create pidfile directory {directory}: {exc.strerror}") from None
        try:
            # Starting copies take turns (a lock on the directory, held for microseconds):
            # two that found the same stale file must not both replace it, nor one
            # delete the file the other has just put in its place.
            fcntl.flock(directory_fd, fcntl.LOCK_EX)
            self._take()
        finally:
            os.close(directory_fd)

    def _take(self) -> None:
        for _ in range(3):
            try:
                self._place(os.link)
            except FileExistsError:
                pid = read_pid(self.path)
                if pid and pid != os.getpid() and pid_alive(pid):
                    raise PidfileError(
                        f"already running: pidfile {self.path} belongs to live process {pid}"
                    ) from None
                # Stale (dead process or unreadable): replace it.
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise PidfileError(f"cannot create pidfile {self.path}: {exc.strerror}") from None
            self._owned = True
            return
        raise PidfileError(f"cannot take pidfile {self.path}: another process keeps replacing it")

    def _place(self, put: Callable[[str, str], None]) -> None:
        """Write this process's PID under a temporary name, then ``put`` it at the path."""
        temporary = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{os.getpid()}\n")
            put(temporary, self.path)
        finally:
            try:
                os.unlink(temporary)
            except FileNotFoundError:  # renamed into place
                pass

    def rewrite(self) -> None:
        """Record the current PID (after daemonising changed it)."""
        if self._owned:
            self._place(os.replace)

    def release(self) -> None:
        if self._owned and read_pid(self.path) == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._owned = False

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
