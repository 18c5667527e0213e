"""Whole-file replacement for the schedule file and its sidecar.

The schedule file is the user's, so a crash or a full disk must never leave half of it:
every write goes to a temporary file in the same folder (so the rename stays on one file
system), is fsynced, and then replaces the old file in one ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

_REPLACE_ATTEMPTS = 5


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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
