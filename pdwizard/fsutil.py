"""File-system helpers shared by everything pdwizard writes (sessions, ranktables,
reports, launch scripts)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# fsync on a directory is not supported everywhere (some network and FUSE file
# systems); the rename has happened by then, so these are not worth failing for.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EBADF}


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o600) -> Path:
    """Replace `path` with `text` (UTF-8) atomically; return the path written.

    Writes a temp file in the same directory, flushes and fsyncs it, sets `mode`
    (exactly, not subject to the umask), `os.replace`s it over `path` and fsyncs the
    directory. A reader sees the old content or the new, never a mix. On any exception
    (including KeyboardInterrupt) before the replace, the temp file is removed and the
    old file is untouched. If `path` is a symlink, its target is replaced and the link
    kept. The parent directory must exist.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    directory = target.parent
    data = text.encode("utf-8")

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(dir_fd)
