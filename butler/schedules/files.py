"""Whole-file replacement for the schedule file and its sidecar.

The schedule file is the user's, so a crash or a full disk must never leave half of it:
every write goes to a temporary file in the same folder (so the rename stays on one file
system), is fsynced, and then replaces the old file in one ``os.replace``. The temporary
file is private (0600) when created, so it takes the old file's mode and owner first: the
admin's ``chmod 644`` and ``chown`` survive every write; a new file gets 0644. On Windows
the file inherits its folder's ACL, as any new file there does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

_REPLACE_ATTEMPTS = 5
_NEW_FILE_MODE = 0o644


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        _take_attributes(fd, path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _take_attributes(fd: int, path: Path) -> None:
    """Give the temporary file the mode and owner of the file it replaces (POSIX)."""
    if not hasattr(os, "fchmod"):
        return
    try:
        old = path.stat()
    except FileNotFoundError:
        os.fchmod(fd, _NEW_FILE_MODE)
        return
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, old.st_uid, old.st_gid)


def _replace(source: Path, target: Path) -> None:
    """``os.replace``, retried briefly: on Windows a reader or virus scanner may hold it."""
    for attempt in range(_REPLACE_ATTEMPTS):
        try:
            source.replace(target)
            return
        except PermissionError:
            if attempt == _REPLACE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
