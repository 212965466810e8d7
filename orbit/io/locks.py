"""Lock files, opened safely: never through a symbolic link, and a directory in their place named.

A lock file lives beside what it guards (the home, the round registry, the yields index, endpoint slots).
Opening one with ``open(path, "a+")`` follows a symlink someone put there and would create or truncate
its target; ``open_lock`` opens with ``O_NOFOLLOW`` and accepts only a regular file.
"""

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockPathError(OSError):
    """Something other than a regular file stands where a lock file belongs."""


def open_lock(path: Path | str, mode: int = 0o644) -> int:
    """A file descriptor of the lock file at ``path`` (created when missing), read-write, never followed
    through a symlink; ``LockPathError`` names what stands there instead. A lock guarding an object-store
    path (an s3:// lake) is a local file (``lakefs.local_lock_path``): it serialises this host's writers only."""
    from orbit.io.lakefs import local_lock_path

    path = local_lock_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except IsADirectoryError:
        raise LockPathError(errno.EISDIR, f"{path} is a directory where a lock file belongs: remove it") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockPathError(errno.ELOOP, f"{path} is a symbolic link where a lock file belongs: "
                                             f"lock files are never opened through one; remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockPathError(errno.EINVAL, f"{path} is not a regular file where a lock file belongs: remove it")
    os.set_blocking(fd, True)
    return fd


@contextmanager
def locked(path: Path | str, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive ``flock`` on the lock file at ``path``; BlockingIOError when taken and not blocking."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
