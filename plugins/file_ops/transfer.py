"""Copy, move, remove and create on folders held open (see the ``folder`` module).

Every function takes open :class:`~butler_plugins.file_ops.folder.Folder` objects and
names directly inside them, never a full path, so what the caller checked is what is used.
Copies are staged under a temporary name and then published without clobbering (hard
link, or a no-clobber rename where hard links do not exist); moves across volumes fall
back to copy and delete.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from butler.errors import BadRequest, Conflict, NotFound
from butler_plugins.file_ops.folder import Folder, LinkInPath, is_link, is_real_dir

_log = logging.getLogger(__name__)

_CONFLICT_ERRNOS = frozenset({errno.EEXIST, errno.ENOTEMPTY})
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Place:
    """A resolved path as an approved root plus the names below it, walked one by one."""

    root: Path
    parts: tuple[str, ...]

    @classmethod
    def below(cls, root: Path, real: Path) -> Place:
        return cls(root, real.relative_to(root).parts)

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def parent(self) -> tuple[str, ...]:
        return self.parts[:-1]


@contextmanager
def parent_of(place: Place, *, create: bool = False) -> Iterator[Folder]:
    """The folder holding ``place``, walked from its approved root without following links.

    With ``create`` missing folders are made, the approved root too (as the original did).
    """
    if create:
        place.root.mkdir(parents=True, exist_ok=True)
    with Folder.open_root(place.root) as root, root.walk(place.parent, create=create) as folder:
        yield folder


def make_dirs(place: Place) -> None:
    place.root.mkdir(parents=True, exist_ok=True)
    with Folder.open_root(place.root) as root, root.walk(place.parts, create=True):
        pass


def existing_entry(folder: Folder, name: str) -> os.stat_result:
    info = folder.lstat_or_none(name)
    if info is None:
        raise NotFound("fromFile does not exist")
    if is_link(info):
        raise LinkInPath(name)
    return info


def _staging_name() -> str:
    return f".butler-{uuid.uuid4().hex}.tmp"


def refuse_links(tree: Folder) -> None:
    """A folder tree holding a link is not copied or moved: links never reach a destination."""
    for name in tree.names():
        info = tree.lstat(name)
        if is_link(info):
            raise BadRequest(
                f"fromFile holds a symbolic link or junction ({name!r}); links are not copied "
                "or moved"
            )
        if stat.S_ISDIR(info.st_mode):
            with tree.child(name) as sub:
                refuse_links(sub)


def copy_data(source: int, target: int) -> None:
    """Copy all bytes between two open descriptors."""
    with (
        os.fdopen(source, "rb", closefd=False) as reader,
        os.fdopen(target, "wb", closefd=False) as writer,
    ):
        shutil.copyfileobj(reader, writer, _COPY_CHUNK)


def publish(source: Folder, name: str, target: Folder, new_name: str, overwrite: bool) -> None:
    """Put the entry ``name`` in place as ``target/new_name``; without overwrite never clobber.

    A hard link fails atomically when the name exists. File systems without hard links
    fall back to rename, which refuses to replace on Windows; elsewhere only a narrow
    check-then-rename window remains. Across volumes this raises ``EXDEV`` for the caller
    to copy instead.
    """
    if overwrite:
        source.replace(name, target, new_name)
        return
    try:
        source.link(name, target, new_name)
    except FileExistsError as exc:
        raise Conflict("toFile already exists and overwrite is false") from exc
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise
        _rename_no_clobber(source, name, target, new_name)
    else:
        source.unlink(name)


def _rename_no_clobber(source: Folder, name: str, target: Folder, new_name: str) -> None:
    if target.lstat_or_none(new_name) is not None:
        raise Conflict("toFile already exists and overwrite is false")
    try:
        source.replace(name, target, new_name)
    except OSError as exc:
        if exc.errno in _CONFLICT_ERRNOS:
            raise Conflict("toFile already exists and overwrite is false") from exc
        raise


def copy_file(
    source: Folder, name: str, target: Folder, new_name: str, overwrite: bool, times: bool
) -> None:
    """Copy from the descriptor opened without following links, staged, then published."""
    reader = source.open_file(name)
    try:
        info = os.fstat(reader)
        if not stat.S_ISREG(info.st_mode):
            raise BadRequest("fromFile is not a regular file")
        staged = _staging_name()
        writer = target.create_file(staged)
        try:
            try:
                copy_data(reader, writer)
                target.copy_attributes(writer, staged, info, times)
            finally:
                os.close(writer)
            publish(target, staged, target, new_name, overwrite)
        finally:
            if target.lstat_or_none(staged) is not None:
                target.unlink(staged)
    finally:
        os.close(reader)


def copy_dir(tree: Folder, target: Folder, new_name: str, overwrite: bool, times: bool) -> None:
    """New targets are built under a temporary name; existing ones are merged (fs-extra)."""
    if overwrite and target.lstat_or_none(new_name) is not None:
        _copy_tree(tree, target, new_name, times)
        return
    staged = _staging_name()
    try:
        _copy_tree(tree, target, staged, times)
        _rename_no_clobber(target, staged, target, new_name)
    except BaseException:
        if target.lstat_or_none(staged) is not None:
            target.remove(staged)
        raise


def _copy_tree(tree: Folder, target: Folder, name: str, times: bool) -> None:
    """Copy ``tree`` into ``target/name``, replacing (never following) links found there."""
    existing = target.lstat_or_none(name)
    if existing is not None and not is_real_dir(existing):
        target.remove(name)
        existing = None
    if existing is None:
        target.mkdir(name)
    with target.child(name) as into:
        for entry in tree.names():
            info = tree.lstat(entry)
            if is_link(info):
                raise LinkInPath(entry)
            if stat.S_ISDIR(info.st_mode):
                with tree.child(entry) as sub:
                    _copy_tree(sub, into, entry, times)
            elif is_real_dir(into.lstat_or_none(entry)):
                raise Conflict("toFile holds a directory where fromFile holds a file")
            else:
                copy_file(tree, entry, into, entry, True, times)
        if times:
            into.set_times(tree.info())


def move_file(source: Folder, name: str, target: Folder, new_name: str, overwrite: bool) -> None:
    try:
        publish(source, name, target, new_name, overwrite)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_file(source, name, target, new_name, overwrite, True)
        source.unlink(name)


def move_dir(source: Folder, name: str, target: Folder, new_name: str, overwrite: bool) -> None:
    """Replace an existing target only once the source is in place (set aside, then drop)."""
    aside = None
    if overwrite and target.lstat_or_none(new_name) is not None:
        aside = _staging_name()
        target.replace(new_name, target, aside)
    try:
        _rename_dir(source, name, target, new_name)
    except BaseException:
        if aside is not None:
            target.replace(aside, target, new_name)
        raise
    if aside is not None:
        target.remove(aside)


def _rename_dir(source: Folder, name: str, target: Folder, new_name: str) -> None:
    try:
        _rename_no_clobber(source, name, target, new_name)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with source.child(name) as tree:
            copy_dir(tree, target, new_name, False, True)
        source.remove(name)


def no_link_arrived(folder: Folder, name: str) -> None:
    """A link swapped in for the moved entry is taken out of the destination again."""
    info = folder.lstat_or_none(name)
    if info is not None and is_link(info):
        folder.unlink(name)
        _log.warning("A link replaced %s while it was moved; the link was removed", name)
        raise Conflict("fromFile was replaced by a link during the move; the link was removed")
