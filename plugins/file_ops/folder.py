"""Folders held open while a file operation works in them, so a checked path stays put.

A path checked by name and then used by name can be redirected in between: whoever may
rename entries inside an approved folder (a writable QVD share is enough) swaps a folder
for a symlink and the operation lands outside. So operations never use a full path after
the check. They open the approved root, then walk down one name at a time, each step
relative to the folder opened before and refusing symlinks (``O_NOFOLLOW``), and then act
on names directly inside the last folder (``dir_fd`` calls: ``openat``, ``unlinkat``,
``mkdirat``, ``renameat``, ``linkat``). A swap after the walk changes nothing: the folder
is open, and the last name is opened or renamed without following links.

Guarantees by platform:

* POSIX: the above. A symlink met anywhere below the approved root, at check or at use,
  refuses the operation (:class:`LinkInPath`).
* Windows, where ``dir_fd`` does not exist: each step is checked (not a symlink, not a
  junction, a folder) and the operation then uses the checked path. That refuses links
  that are there when the operation runs, but a swap in the microseconds between a step's
  check and its use is not excluded; keep approved folders writable only by accounts that
  are trusted not to race Butler (docs/file-operations.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from butler_plugins.file_ops.windows_handles import redirects

_BY_FD = (
    os.name != "nt" and {os.open, os.mkdir, os.rename, os.unlink, os.stat} <= os.supports_dir_fd
)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class LinkInPath(Exception):
    """A name on the way (or the entry itself) is a symlink or junction."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def is_link(info: os.stat_result) -> bool:
    """Symlinks, and on Windows junctions and every other name-surrogate reparse point.

    Other reparse points (deduplicated or cloud placeholder files) are ordinary files here,
    as for the handle checks (``windows_handles.redirects``).
    """
    return stat.S_ISLNK(info.st_mode) or redirects(getattr(info, "st_reparse_tag", 0))


def is_real_dir(info: os.stat_result | None) -> bool:
    return info is not None and stat.S_ISDIR(info.st_mode) and not is_link(info)


class Folder:
    """One open folder; every method names an entry directly inside it."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @classmethod
    def open_root(cls, root: Path) -> Folder:
        """An approved folder as the config names it (links in the config's path are fine)."""
        if not _BY_FD:
            if not root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(root))
            return cls(root, None)
        return cls(root, os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- walking -----------------------------------------------------------------------

    def child(self, name: str, *, create: bool = False) -> Folder:
        """The sub-folder ``name`` (made first with ``create``); links are refused."""
        if create and self.lstat_or_none(name) is None:
            with contextlib.suppress(FileExistsError):
                self.mkdir(name)
        if self._fd is None:
            info = self.lstat(name)
            if is_link(info):
                raise LinkInPath(name)
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
            return Folder(self.path / name, None)
        try:
            fd = os.open(
                name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=self._fd
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP or (
                exc.errno == errno.ENOTDIR and is_link(self.lstat(name))
            ):
                raise LinkInPath(name) from None
            raise
        return Folder(self.path / name, fd)

    @contextlib.contextmanager
    def walk(self, parts: Sequence[str], *, create: bool = False) -> Iterator[Folder]:
        """The folder ``parts`` below this one, each step opened from the one before."""
        current = self
        try:
            for part in parts:
                step = current.child(part, create=create)
                if current is not self:
                    current.close()
                current = step
            yield current
        finally:
            if current is not self:
                current.close()

    # -- entries -----------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result:
        if self._fd is None:
            return os.lstat(self.path / name)
        return os.stat(name, dir_fd=self._fd, follow_symlinks=False)

    def lstat_or_none(self, name: str) -> os.stat_result | None:
        try:
            return self.lstat(name)
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        if self._fd is None:
            return [entry.name for entry in self.path.iterdir()]
        return os.listdir(self._fd)  # noqa: PTH208 (a descriptor has no pathlib form)

    def open_file(self, name: str) -> int:
        """A descriptor to read ``name``; a link there is refused, not followed."""
        if self._fd is None:
            if is_link(self.lstat(name)):
                raise LinkInPath(name)
            return os.open(self.path / name, os.O_RDONLY | _O_BINARY)
        try:
            return os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=self._fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkInPath(name) from None
            raise

    def create_file(self, name: str) -> int:
        """A new private file ``name``; fails if anything (a link too) is already there."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
        if self._fd is None:
            return os.open(self.path / name, flags, 0o600)
        return os.open(name, flags, 0o600, dir_fd=self._fd)

    def mkdir(self, name: str) -> None:
        if self._fd is None:
            (self.path / name).mkdir()
        else:
            os.mkdir(name, dir_fd=self._fd)

    def unlink(self, name: str) -> None:
        if self._fd is None:
            (self.path / name).unlink()
        else:
            os.unlink(name, dir_fd=self._fd)

    def remove(self, name: str) -> None:
        """Remove a file, a link (never what it points to), or a folder tree."""
        if not is_real_dir(self.lstat(name)):
            self.unlink(name)
        elif self._fd is None:
            shutil.rmtree(self.path / name)
        else:
            shutil.rmtree(name, dir_fd=self._fd)

    def replace(self, name: str, target: Folder, new_name: str) -> None:
        """Rename ``name`` to ``target/new_name``, replacing what is there (not following it)."""
        if self._fd is None or target._fd is None:
            (self.path / name).replace(target.path / new_name)
        else:
            os.rename(name, new_name, src_dir_fd=self._fd, dst_dir_fd=target._fd)

    def link(self, name: str, target: Folder, new_name: str) -> None:
        """A hard link ``target/new_name`` to the entry ``name``; fails if the name is taken."""
        if self._fd is None or target._fd is None:
            os.link(self.path / name, target.path / new_name)
        else:
            os.link(
                name,
                new_name,
                src_dir_fd=self._fd,
                dst_dir_fd=target._fd,
                follow_symlinks=False,
            )

    def copy_attributes(self, fd: int, name: str, source: os.stat_result, times: bool) -> None:
        """Give the open file ``name`` the mode (and with ``times`` the times) of ``source``."""
        mode = stat.S_IMODE(source.st_mode)
        stamps = (source.st_atime_ns, source.st_mtime_ns)
        if self._fd is None:
            (self.path / name).chmod(mode)
            if times:
                os.utime(self.path / name, ns=stamps)
            return
        os.fchmod(fd, mode)
        if times:
            os.utime(fd, ns=stamps)

    def info(self) -> os.stat_result:
        """This folder's own status."""
        return self.path.stat() if self._fd is None else os.fstat(self._fd)

    def set_times(self, source: os.stat_result) -> None:
        """This folder's times from ``source`` (after its content was written)."""
        stamps = (source.st_atime_ns, source.st_mtime_ns)
        os.utime(self.path if self._fd is None else self._fd, ns=stamps)
