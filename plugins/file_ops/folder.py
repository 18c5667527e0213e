"""Folders held open while a file operation works in them, so a checked path stays put.

A path checked by name and then used by name can be redirected in between: whoever may
rename entries inside an approved folder (a writable QVD share is enough) swaps a folder
for a symlink and the operation lands outside. So operations never use a full path after
the check. They open the approved root, then walk down one name at a time, each step
opened from the folder before without following links, and then act on names directly
inside the last folder.

Guarantees by platform:

* POSIX: each step is opened relative to the one before with ``O_NOFOLLOW``, and the
  operation acts through ``dir_fd`` calls (``openat``, ``unlinkat``, ``mkdirat``,
  ``renameat``, ``linkat``). A swap after the walk changes nothing: the folder is open,
  and the last name is opened or renamed without following links. A symlink met anywhere
  below the approved root, at check or at use, refuses the operation (:class:`LinkInPath`).
* Windows, which has no ``dir_fd``: :class:`HandleFolder`. Every folder on the walk is
  held as a handle that does not share delete, so none of them can be renamed or replaced
  while the operation runs; entries are opened as themselves, refused if they are links or
  if their final path is not where their name says, and then read, deleted and renamed
  through that handle (the ``windows_handles`` module). What remains is listed in
  docs/file-operations.md.
* Neither (no platform Butler supports): names are checked step by step and then used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

from butler_plugins.file_ops.windows_handles import (
    Entry,
    Guard,
    Held,
    Redirected,
    redirects,
    system_kernel,
)

_BY_FD = (
    os.name != "nt" and {os.open, os.mkdir, os.rename, os.unlink, os.stat} <= os.supports_dir_fd
)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_KERNEL = None if _BY_FD else system_kernel()

_P = ParamSpec("_P")
_R = TypeVar("_R")


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
        if _BY_FD:
            return cls(root, os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))
        if _KERNEL is not None:
            return HandleFolder.open_held_root(root, Guard(_KERNEL))
        if not root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(root))
        return cls(root, None)

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
        if create:
            self._make_missing(name)
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

    def _make_missing(self, name: str) -> None:
        """Make the sub-folder ``name`` unless something is there (a lost race is fine)."""
        if self.lstat_or_none(name) is None:
            with contextlib.suppress(FileExistsError):
                self.mkdir(name)

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


def _refused_as_link(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A handle the Windows checks refused is a :class:`LinkInPath` to the operations."""

    @functools.wraps(method)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except Redirected as exc:
            raise LinkInPath(exc.name) from exc

    return checked


class HandleFolder(Folder):
    """A folder held as a Windows handle that does not share delete (``windows_handles``).

    Windows is still given paths (the walked folder plus a name), but every folder on that
    path is held, so nobody can rename or replace one of them while Butler works. Entries
    are opened as themselves and checked through the handle, then read, deleted and renamed
    through it. What has no by-handle call goes by name below the held folders: listing and
    status (decisions only, re-checked at use), making a folder (checked right after), a hard
    link (its source pinned by a handle meanwhile), and the mode and times of a staged file
    (pinned by its open writer) or of a held folder.
    """

    def __init__(self, path: Path, guard: Guard, held: Held):
        super().__init__(path, None)
        self._guard = guard
        self._held: Held | None = held

    @classmethod
    @_refused_as_link
    def open_held_root(cls, root: Path, guard: Guard) -> HandleFolder:
        return cls(root, guard, guard.open_root(str(root)))

    def close(self) -> None:
        if self._held is not None:
            self._guard.close(self._held)
            self._held = None

    def _entry(self, name: str) -> Entry:
        if self._held is None:
            raise ValueError(f"{self.path} is closed")
        return Entry(self._held, str(self.path / name), name)

    @_refused_as_link
    def child(self, name: str, *, create: bool = False) -> HandleFolder:
        if create:
            self._make_missing(name)
        return HandleFolder(
            self.path / name, self._guard, self._guard.open_folder(self._entry(name))
        )

    @contextlib.contextmanager
    def walk(self, parts: Sequence[str], *, create: bool = False) -> Iterator[Folder]:
        """As :meth:`Folder.walk`, but every step stays held until the end, not just the last.

        The share mode of the held folders is what keeps the names on the way in place.
        """
        with contextlib.ExitStack() as steps:
            current: Folder = self
            for part in parts:
                current = steps.enter_context(current.child(part, create=create))
            yield current

    @_refused_as_link
    def open_file(self, name: str) -> int:
        return self._guard.read(self._entry(name))

    @_refused_as_link
    def create_file(self, name: str) -> int:
        return self._guard.create(self._entry(name))

    @_refused_as_link
    def mkdir(self, name: str) -> None:
        """Made by name, then opened and checked: a folder made elsewhere is reported, not used."""
        super().mkdir(name)
        self._guard.check_created(self._entry(name))

    @_refused_as_link
    def unlink(self, name: str) -> None:
        self._guard.delete(self._entry(name))

    @_refused_as_link
    def remove(self, name: str) -> None:
        """A folder tree goes entry by entry through checked handles, then the folder itself."""
        if not is_real_dir(self.lstat(name)):
            self.unlink(name)
            return
        held = self._guard.open_folder(self._entry(name), delete=True)
        with HandleFolder(self.path / name, self._guard, held) as tree:
            for entry in tree.names():
                tree.remove(entry)
            self._guard.delete_held(held)

    @_refused_as_link
    def replace(self, name: str, target: Folder, new_name: str) -> None:
        self._guard.rename(self._entry(name), _handle_folder(target)._entry(new_name))

    @_refused_as_link
    def link(self, name: str, target: Folder, new_name: str) -> None:
        with self._guard.pinned(self._entry(name)):
            super().link(name, target, new_name)


def _handle_folder(folder: Folder) -> HandleFolder:
    """Both ends of a rename are held folders: one process uses one kind of folder."""
    if not isinstance(folder, HandleFolder):
        raise TypeError(f"{folder.path} is not held as a handle")
    return folder
