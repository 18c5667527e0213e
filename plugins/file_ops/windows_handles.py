"""Windows, where ``dir_fd`` does not exist: open each entry as a handle, check it, use it.

A path checked by name and used by name can be redirected in between. Windows has no
``openat``, so the POSIX walk of the ``folder`` module is rebuilt from what it does have:

* Every folder on the walk, the approved root included, is opened with ``CreateFileW`` and
  held until the operation ends. The handle asks for ``FILE_LIST_DIRECTORY`` and shares
  read and write but not delete. Attribute-only handles take no part in share checks, so
  the data access is what makes the share mode bind: while Butler holds the folder nobody
  can open it for ``DELETE``, which renaming and deleting need. A held folder therefore
  cannot be swapped for a junction or symlink, and names below it stay where they were
  checked.
* Entries are opened with ``FILE_FLAG_OPEN_REPARSE_POINT`` (a link is opened as itself,
  never followed) and checked through the handle: its reparse tag
  (``GetFileInformationByHandleEx``, ``FileAttributeTagInfo``) must not be a name
  surrogate (symlink, junction, WSL link...), and its final path
  (``GetFinalPathNameByHandleW``) must lie directly in the held folder it was opened from,
  strictly inside the approved root's final path.
* The checked handle is then what is used: files are read through it, deleted through it
  (``FileDispositionInfo``), renamed through it (``FileRenameInfo``). Files are created with
  ``CREATE_NEW`` and folders created by name are opened and checked at once; one that is
  not where it was made is reported and not used.

The module has three layers. The decisions (final-path normalisation, containment,
which reparse tags redirect) are pure functions. :class:`Kernel` is the handful of
kernel32 calls they need, implemented by :class:`Kernel32` with ctypes on Windows only and
faked by the tests. :class:`Guard` fixes the order (open, refuse links, check the final
path, then act, close on every exit) over any :class:`Kernel`. What this does and does not
guarantee is written down in docs/file-operations.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Protocol

_log = logging.getLogger(__name__)

# Access rights, share modes, dispositions, flags and attributes (winnt.h, fileapi.h).
FILE_LIST_DIRECTORY = 0x0001  # FILE_READ_DATA on a file
FILE_READ_ATTRIBUTES = 0x0080
DELETE = 0x0001_0000
SYNCHRONIZE = 0x0010_0000
GENERIC_WRITE = 0x4000_0000
GENERIC_READ = 0x8000_0000
FILE_SHARE_READ = 0x1
FILE_SHARE_WRITE = 0x2
FILE_SHARE_DELETE = 0x4
CREATE_NEW = 1
OPEN_EXISTING = 3
FILE_FLAG_OPEN_REPARSE_POINT = 0x0020_0000
FILE_FLAG_BACKUP_SEMANTICS = 0x0200_0000  # needed to open a folder at all
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
IO_REPARSE_TAG_MOUNT_POINT = 0xA000_0003  # junctions and volume mount points
IO_REPARSE_TAG_SYMLINK = 0xA000_000C
_NAME_SURROGATE_BIT = 0x2000_0000  # IsReparseTagNameSurrogate: the tag names another path

HELD_SHARE = FILE_SHARE_READ | FILE_SHARE_WRITE  # no FILE_SHARE_DELETE: pinned while held
_FOLDER_ACCESS = FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE
_CHANGE_ACCESS = DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE
_AS_ITSELF = FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT

_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


# -- decisions (pure) ------------------------------------------------------------------------


def final_path(raw: str) -> PureWindowsPath:
    r"""A final path as a plain DOS path: ``\\?\C:\x`` is ``C:\x``, ``\\?\UNC\s\sh`` is ``\\s\sh``.

    Anything else Windows might return (a ``\\?\Volume{...}`` form) stays relative and so
    lies inside nothing.
    """
    if raw[:8].upper() == "\\\\?\\UNC\\":
        return PureWindowsPath("\\\\" + raw[8:])
    if raw.startswith("\\\\?\\"):
        return PureWindowsPath(raw[4:])
    return PureWindowsPath(raw)


def _key(path: PureWindowsPath) -> tuple[str, ...]:
    """Segments compared as NTFS does for the names that matter here: ASCII case ignored.

    Non-ASCII case is kept. Both sides come from the file system, which returns the stored
    spelling, so this never refuses the same folder; full Unicode folding would instead let
    ``straße`` pass for ``strasse``.
    """
    return tuple(part.translate(_ASCII_FOLD) for part in path.parts)


def same_path(a: PureWindowsPath, b: PureWindowsPath) -> bool:
    return a.is_absolute() and b.is_absolute() and _key(a) == _key(b)


def inside(path: PureWindowsPath, root: PureWindowsPath, *, strict: bool = False) -> bool:
    """Whether ``path`` is ``root`` or below it, segment by segment (``qvd2`` is not in ``qvd``)."""
    if not (path.is_absolute() and root.is_absolute()) or ".." in path.parts:
        return False
    here, top = _key(path), _key(root)
    return here[: len(top)] == top and (len(here) > len(top) or not strict)


def placed(final: PureWindowsPath, parent: PureWindowsPath, root: PureWindowsPath) -> bool:
    """Whether an entry opened by name in ``parent`` really is there, strictly inside ``root``."""
    return inside(final, root, strict=True) and same_path(final.parent, parent)


def redirects(tag: int) -> bool:
    """Whether a reparse tag sends the name elsewhere (symlink, junction, WSL link...).

    That is Microsoft's name-surrogate bit, the rule Python's own ``os.lstat`` uses to
    decide which reparse points to open as themselves. Other reparse points (deduplicated
    files, cloud placeholders) are the file itself, read through their filter.
    """
    return bool(tag & _NAME_SURROGATE_BIT)


class Redirected(Exception):
    """A handle the checks refused: its name does not lead where it says."""

    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.name = name


class LinkFound(Redirected):
    """The entry is a symlink, junction or other name surrogate; it was opened, not followed."""

    def __init__(self, name: str, tag: int):
        super().__init__(name, f"reparse tag {tag:#010x} points elsewhere")
        self.tag = tag


class Misplaced(Redirected):
    """The handle's final path is not directly in the held folder, inside the approved root."""

    def __init__(self, name: str, final: PureWindowsPath):
        super().__init__(name, f"is at {final}")
        self.final = final


# -- the kernel32 calls ----------------------------------------------------------------------


class Kernel(Protocol):
    """The kernel32 calls the guard needs: :class:`Kernel32` on Windows, fakes in tests."""

    def open(self, path: str, access: int, share: int, disposition: int, flags: int) -> int:
        """``CreateFileW``: a new handle, or ``OSError`` with the Windows error."""

    def close(self, handle: int) -> None:
        """``CloseHandle``."""

    def attribute_tag(self, handle: int) -> tuple[int, int]:
        """``GetFileInformationByHandleEx(FileAttributeTagInfo)``: attributes, reparse tag."""

    def final_path(self, handle: int) -> str:
        """``GetFinalPathNameByHandleW(FILE_NAME_NORMALIZED | VOLUME_NAME_DOS)``."""

    def delete(self, handle: int) -> None:
        """``SetFileInformationByHandle(FileDispositionInfo)``: gone when the handle closes."""

    def rename(self, handle: int, new_path: str) -> None:
        """``SetFileInformationByHandle(FileRenameInfo)``, replacing what is at ``new_path``."""

    def to_fd(self, handle: int) -> int:
        """``msvcrt.open_osfhandle``: a descriptor that now owns (and will close) the handle."""


# FILE_* _INFO layouts of winbase.h, in fixed-size ctypes types so that they are the same on
# every platform and their layout is tested where the tests run.


class AttributeTagInfo(ctypes.Structure):
    _fields_ = (("FileAttributes", ctypes.c_uint32), ("ReparseTag", ctypes.c_uint32))


class DispositionInfo(ctypes.Structure):
    _fields_ = (("DeleteFile", ctypes.c_uint8),)


class RenameInfo(ctypes.Structure):
    _fields_ = (
        ("ReplaceIfExists", ctypes.c_uint32),  # union { BOOLEAN ReplaceIfExists; DWORD Flags }
        ("RootDirectory", ctypes.c_void_p),
        ("FileNameLength", ctypes.c_uint32),  # bytes, without the terminating NUL
        ("FileName", ctypes.c_uint16 * 1),  # WCHAR[1], really as long as the name
    )


def rename_info(new_path: str) -> ctypes.Array[ctypes.c_char]:
    """A ``FILE_RENAME_INFO`` that replaces: a full path, no root directory, UTF-16 name."""
    encoded = new_path.encode("utf-16-le")
    offset = RenameInfo.FileName.offset
    buffer = ctypes.create_string_buffer(max(ctypes.sizeof(RenameInfo), offset + len(encoded) + 2))
    info = RenameInfo.from_buffer(buffer)
    info.ReplaceIfExists = 1
    info.FileNameLength = len(encoded)
    ctypes.memmove(ctypes.addressof(buffer) + offset, encoded, len(encoded))
    return buffer


if sys.platform == "win32":
    import msvcrt
    from ctypes import wintypes

    _INVALID_HANDLE_VALUE = wintypes.HANDLE(-1).value
    _FILE_RENAME_INFO = 3  # FILE_INFO_BY_HANDLE_CLASS values
    _FILE_DISPOSITION_INFO = 4
    _FILE_ATTRIBUTE_TAG_INFO = 9
    _FINAL_PATH_FLAGS = 0  # FILE_NAME_NORMALIZED | VOLUME_NAME_DOS, both 0

    class Kernel32:
        """:class:`Kernel` with ctypes, on a private kernel32 instance (argtypes stay ours)."""

        def __init__(self) -> None:
            dll = ctypes.WinDLL("kernel32", use_last_error=True)
            self._create = dll.CreateFileW
            self._create.argtypes = (
                wintypes.LPCWSTR,
                wintypes.DWORD,
                wintypes.DWORD,
                wintypes.LPVOID,
                wintypes.DWORD,
                wintypes.DWORD,
                wintypes.HANDLE,
            )
            self._create.restype = wintypes.HANDLE
            self._close = dll.CloseHandle
            self._close.argtypes = (wintypes.HANDLE,)
            self._close.restype = wintypes.BOOL
            self._get_info = dll.GetFileInformationByHandleEx
            self._set_info = dll.SetFileInformationByHandle
            for call in (self._get_info, self._set_info):
                call.argtypes = (wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID, wintypes.DWORD)
                call.restype = wintypes.BOOL
            self._final = dll.GetFinalPathNameByHandleW
            self._final.argtypes = (
                wintypes.HANDLE,
                wintypes.LPWSTR,
                wintypes.DWORD,
                wintypes.DWORD,
            )
            self._final.restype = wintypes.DWORD

        @staticmethod
        def _error(path: str | None = None) -> OSError:
            """The last Windows error; ``OSError`` maps it to errno and the subclass."""
            code = ctypes.get_last_error()
            return OSError(None, ctypes.FormatError(code), path, code)

        def open(self, path: str, access: int, share: int, disposition: int, flags: int) -> int:
            handle = self._create(path, access, share, None, disposition, flags, None)
            if handle is None or handle == _INVALID_HANDLE_VALUE:
                raise self._error(path)
            return int(handle)

        def close(self, handle: int) -> None:
            if not self._close(handle):
                raise self._error()

        def attribute_tag(self, handle: int) -> tuple[int, int]:
            info = AttributeTagInfo()
            size = ctypes.sizeof(info)
            if not self._get_info(handle, _FILE_ATTRIBUTE_TAG_INFO, ctypes.byref(info), size):
                raise self._error()
            return info.FileAttributes, info.ReparseTag

        def final_path(self, handle: int) -> str:
            size = 512
            while True:
                buffer = ctypes.create_unicode_buffer(size)
                length = self._final(handle, buffer, size, _FINAL_PATH_FLAGS)
                if length == 0:
                    raise self._error()
                if length < size:  # success: the length without the NUL
                    return buffer.value
                size = length  # too small: the size needed, NUL included

        def delete(self, handle: int) -> None:
            info = DispositionInfo(1)
            size = ctypes.sizeof(info)
            if not self._set_info(handle, _FILE_DISPOSITION_INFO, ctypes.byref(info), size):
                raise self._error()

        def rename(self, handle: int, new_path: str) -> None:
            info = rename_info(new_path)
            if not self._set_info(handle, _FILE_RENAME_INFO, ctypes.byref(info), len(info)):
                raise self._error(new_path)

        def to_fd(self, handle: int) -> int:
            return msvcrt.open_osfhandle(handle, 0)  # binary; the handle's access decides


def system_kernel() -> Kernel | None:
    """The real kernel32 on Windows; elsewhere ``None`` (POSIX has ``dir_fd`` instead)."""
    if sys.platform == "win32":
        return Kernel32()
    return None


# -- the order of checks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """An open handle whose final path was checked, and the approved root it must stay in."""

    handle: int
    final: PureWindowsPath
    root: PureWindowsPath


@dataclass(frozen=True)
class Entry:
    """The name ``name`` in the held folder ``parent``; ``path`` is how the OS is given it."""

    parent: Held
    path: str
    name: str


class Guard:
    """Opens, checks, uses and closes handles in the order that makes a check hold.

    Every method closes what it opened on every way out, except handles it returns
    (:class:`Held`, closed with :meth:`close`) or turns into a descriptor.
    """

    def __init__(self, kernel: Kernel):
        self._kernel = kernel

    def open_root(self, path: str) -> Held:
        """An approved folder as the config names it; links on the way there are followed."""
        handle = self._kernel.open(
            path, _FOLDER_ACCESS, HELD_SHARE, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS
        )
        with self._closed_on_error(handle):
            attributes, _tag = self._kernel.attribute_tag(handle)
            if not attributes & FILE_ATTRIBUTE_DIRECTORY:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            final = final_path(self._kernel.final_path(handle))
            if not final.is_absolute():
                raise Misplaced(path, final)
            return Held(handle, final, final)

    def open_folder(self, entry: Entry, *, delete: bool = False) -> Held:
        """The sub-folder ``entry``, held; with ``delete`` the handle may also delete it."""
        access = _FOLDER_ACCESS | DELETE if delete else _FOLDER_ACCESS
        handle = self._kernel.open(entry.path, access, HELD_SHARE, OPEN_EXISTING, _AS_ITSELF)
        with self._closed_on_error(handle):
            attributes = self._not_redirected(handle, entry)
            if not attributes & FILE_ATTRIBUTE_DIRECTORY:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", entry.name)
            return self._placed(handle, entry)

    def close(self, held: Held) -> None:
        self._kernel.close(held.handle)

    def check_created(self, entry: Entry) -> None:
        """A folder just made by name: opened and checked; one found elsewhere is reported."""
        try:
            held = self.open_folder(entry)
        except Redirected as exc:
            _log.error("Created folder %s is not where it was made (%s); not used", entry.path, exc)
            raise
        self.close(held)

    def read(self, entry: Entry) -> int:
        """A descriptor reading the file ``entry``, opened as itself and checked."""
        handle = self._kernel.open(
            entry.path, GENERIC_READ, HELD_SHARE, OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT
        )
        with self._closed_on_error(handle):
            attributes = self._not_redirected(handle, entry)
            held = self._placed(handle, entry)
            if not attributes & FILE_ATTRIBUTE_REPARSE_POINT:
                return self._kernel.to_fd(handle)
            content = self._through_filter(held, entry)
        self._kernel.close(handle)
        with self._closed_on_error(content):
            return self._kernel.to_fd(content)

    def _through_filter(self, held: Held, entry: Entry) -> int:
        """A deduplicated or cloud file opened again so that its filter supplies the data.

        Opened as a reparse point its content would be the raw stub. ``held`` still pins the
        name (no delete sharing), and the new handle must have the same final path.
        """
        handle = self._kernel.open(entry.path, GENERIC_READ, HELD_SHARE, OPEN_EXISTING, 0)
        with self._closed_on_error(handle):
            final = final_path(self._kernel.final_path(handle))
            if not same_path(final, held.final):
                raise Misplaced(entry.name, final)
            return handle

    def create(self, entry: Entry) -> int:
        """A descriptor writing the new file ``entry`` (``CREATE_NEW``: nothing may be there)."""
        handle = self._kernel.open(
            entry.path,
            GENERIC_WRITE | DELETE | FILE_READ_ATTRIBUTES,  # GENERIC_WRITE cannot read them
            FILE_SHARE_READ,
            CREATE_NEW,
            FILE_FLAG_OPEN_REPARSE_POINT,
        )
        with self._closed_on_error(handle):
            try:
                self._placed(handle, entry)
            except Misplaced as exc:
                _log.error(
                    "Created file %s is not where it was made (%s); removed", entry.path, exc
                )
                self._kernel.delete(handle)
                raise
            return self._kernel.to_fd(handle)

    def delete(self, entry: Entry) -> None:
        """Delete ``entry`` itself (a link, never its target) through its checked handle."""
        share = HELD_SHARE | FILE_SHARE_DELETE  # as DeleteFileW: others' open handles may stay
        handle = self._kernel.open(entry.path, _CHANGE_ACCESS, share, OPEN_EXISTING, _AS_ITSELF)
        try:
            self._placed(handle, entry)
            self._kernel.delete(handle)
        finally:
            self._kernel.close(handle)

    def delete_held(self, held: Held) -> None:
        """Delete a folder held by :meth:`open_folder` with ``delete`` once it is empty."""
        self._kernel.delete(held.handle)

    def rename(self, entry: Entry, destination: Entry) -> None:
        """Move ``entry`` itself to ``destination``, replacing it; checked before and after."""
        handle = self._kernel.open(
            entry.path, _CHANGE_ACCESS, HELD_SHARE, OPEN_EXISTING, _AS_ITSELF
        )
        try:
            self._placed(handle, entry)
            self._kernel.rename(handle, destination.path)
            try:
                self._placed(handle, destination)
            except Misplaced as exc:
                _log.error("Renamed %s is not where it was put (%s)", entry.path, exc)
                raise
        finally:
            self._kernel.close(handle)

    @contextlib.contextmanager
    def pinned(self, entry: Entry) -> Iterator[None]:
        """Hold ``entry`` (checked, not a link) so that nobody can rename or delete it.

        For the calls that have no by-handle form (a hard link): within the block the name
        still means the entry that was checked.
        """
        handle = self._kernel.open(entry.path, GENERIC_READ, HELD_SHARE, OPEN_EXISTING, _AS_ITSELF)
        try:
            self._not_redirected(handle, entry)
            self._placed(handle, entry)
            yield
        finally:
            self._kernel.close(handle)

    # -- the checks --------------------------------------------------------------------------

    def _not_redirected(self, handle: int, entry: Entry) -> int:
        """The entry's attributes, unless it is a link: that is refused before anything else."""
        attributes, tag = self._kernel.attribute_tag(handle)
        if attributes & FILE_ATTRIBUTE_REPARSE_POINT and redirects(tag):
            raise LinkFound(entry.name, tag)
        return attributes

    def _placed(self, handle: int, entry: Entry) -> Held:
        """``handle`` as a :class:`Held`, if its final path is where ``entry`` says."""
        final = final_path(self._kernel.final_path(handle))
        if not placed(final, entry.parent.final, entry.parent.root):
            raise Misplaced(entry.name, final)
        return Held(handle, final, entry.parent.root)

    @contextlib.contextmanager
    def _closed_on_error(self, handle: int) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._kernel.close(handle)
            raise
