"""File copy, move, delete and folder creation, confined to approved folders.

Every request path passes two gates before anything is read or written: the lexical test of
the ``policy`` module (no file-system access, so a refused path is never probed), then the
same test on the path the OS resolves (symlinks, junctions, POSIX ``link/..``), compared
with the resolved approved folders. Existence is only looked at after both passed.

Writes are staged: a copied file is written to a temporary name in the destination folder
and then renamed into place, so a destination is never seen half-written; without
``overwrite`` the final step is a hard link or a no-clobber rename, which fails instead of
replacing a file that appeared in the meantime. Links met inside a copied folder are copied
as links, and links at the destination are replaced rather than written through, so a
link can never carry data into or out of an approved folder.

Every call writes one line to the ``butler.audit`` logger: caller, operation, the paths as
sent, and the outcome.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath

from butler.errors import ApiError, BadRequest, Conflict, FeatureUnavailable, Forbidden, NotFound
from butler_plugins.file_ops.policy import CheckedPath, DirectoryPair, PathPolicy

AUDIT_LOGGER = "butler.audit"

_audit = logging.getLogger(AUDIT_LOGGER)
_log = logging.getLogger(__name__)

_QVD_REFUSAL = "Directory must be within the QVD folder"
_CONFLICT_ERRNOS = frozenset({errno.EEXIST, errno.ENOTEMPTY})
_LINK_REPARSE_TAGS = frozenset({0xA000000C, 0xA0000003})  # IO_REPARSE_TAG_SYMLINK, _MOUNT_POINT


class FileOperations:
    """The five file operations, with their approved folders.

    ``None`` for a copy, move or delete list approves nothing (the feature answers 403);
    ``None`` for ``create_dirs`` leaves ``createdir`` unrestricted, as in the original.
    """

    def __init__(
        self,
        *,
        policy: PathPolicy | None = None,
        copy_pairs: Sequence[DirectoryPair] | None = None,
        move_pairs: Sequence[DirectoryPair] | None = None,
        delete_dirs: Sequence[CheckedPath] | None = None,
        qvd_dir: CheckedPath | None = None,
        create_dirs: Sequence[CheckedPath] | None = None,
    ) -> None:
        self._policy = policy or PathPolicy()
        self._copy_pairs = list(copy_pairs or ())
        self._move_pairs = list(move_pairs or ())
        self._delete_dirs = list(delete_dirs or ())
        self._qvd_dir = qvd_dir
        self._create_dirs = None if create_dirs is None else list(create_dirs)

    # -- operations ------------------------------------------------------------------------

    def copy(
        self,
        client: str,
        from_file: str | None,
        to_file: str | None,
        *,
        overwrite: bool,
        preserve_timestamp: bool,
    ) -> tuple[str, str]:
        """Copy a file or a folder tree; return the normalised (source, destination)."""
        with self._audited(
            client, "copy", "Failed copying file", fromFile=from_file, toFile=to_file
        ):
            source, target, real_source, real_target = self._approve_transfer(
                self._copy_pairs, from_file, to_file, "file copy"
            )
            self._check_transfer(real_source, real_target, overwrite)
            _make_dir(real_target.parent)
            if real_source.is_dir():
                _copy_dir(real_source, real_target, overwrite, preserve_timestamp)
            else:
                _copy_file(real_source, real_target, overwrite, preserve_timestamp)
            return source.display, target.display

    def move(
        self, client: str, from_file: str | None, to_file: str | None, *, overwrite: bool
    ) -> tuple[str, str]:
        """Move a file or a folder tree; return the normalised (source, destination)."""
        with self._audited(
            client, "move", "Failed moving file", fromFile=from_file, toFile=to_file
        ):
            source, target, real_source, real_target = self._approve_transfer(
                self._move_pairs, from_file, to_file, "file move"
            )
            self._check_transfer(real_source, real_target, overwrite)
            _make_dir(real_target.parent)
            if real_source.is_dir():
                _move_dir(real_source, real_target, overwrite)
            else:
                _move_file(real_source, real_target, overwrite)
            return source.display, target.display

    def delete(self, client: str, delete_file: str | None) -> None:
        """Delete a file, a link, or a folder tree strictly below an approved folder."""
        with self._audited(client, "delete", "Failed deleting file", deleteFile=delete_file):
            refusal = "No approved directory for file delete"
            target = self._policy.parse(delete_file, "deleteFile", "file delete")
            candidates = self._policy.approved_dirs(self._delete_dirs, target.normal, strict=True)
            if not candidates:
                raise Forbidden(refusal)
            real = _resolve_entry(target.written)
            if not any(
                self._policy.contains(_resolve(d.written), real, strict=True) for d in candidates
            ):
                raise Forbidden(refusal)
            try:
                _remove_entry(real)
            except FileNotFoundError:
                raise NotFound("Delete failed, file does not exist") from None

    def create_qvd_dir(self, client: str, directory: str | None) -> None:
        """Create a folder (and its parents) below ``configDirectories.qvdPath``."""
        with self._audited(
            client, "createdirqvd", "Failed creating directory", directory=directory
        ):
            if directory is None:
                raise BadRequest("Required parameter missing")
            if self._qvd_dir is None:
                raise FeatureUnavailable("Butler.configDirectories.qvdPath is not configured")
            target = self._policy.parse_below(self._qvd_dir, directory, "directory", _QVD_REFUSAL)
            real = _resolve(target.written)
            if not self._policy.contains(_resolve(self._qvd_dir.written), real, strict=False):
                raise Forbidden(_QVD_REFUSAL)
            _make_dir(real)

    def create_dir(self, client: str, directory: str | None) -> None:
        """Create a folder (and its parents), inside ``createDirApprovedDirectories`` if set."""
        with self._audited(client, "createdir", "Failed to create directory", directory=directory):
            target = self._policy.parse(directory, "directory", "directory create")
            real = _resolve(target.written)
            if self._create_dirs is not None:
                refusal = "No approved directory for directory creation"
                candidates = self._policy.approved_dirs(
                    self._create_dirs, target.normal, strict=False
                )
                if not any(
                    self._policy.contains(_resolve(d.written), real, strict=False)
                    for d in candidates
                ):
                    raise Forbidden(refusal)
            _make_dir(real)

    # -- approval --------------------------------------------------------------------------

    def _approve_transfer(
        self,
        pairs: Sequence[DirectoryPair],
        from_file: str | None,
        to_file: str | None,
        operation: str,
    ) -> tuple[CheckedPath, CheckedPath, Path, Path]:
        refusal = f"No approved fromDir/toDir for {operation}"
        source = self._policy.parse(from_file, "fromFile", operation)
        target = self._policy.parse(to_file, "toFile", operation)
        candidates = self._policy.approved_pairs(pairs, source.normal, target.normal)
        if not candidates:
            raise Forbidden(refusal)
        real_source, real_target = _resolve(source.written), _resolve(target.written)
        contains = self._policy.contains
        if not any(
            contains(_resolve(pair.from_dir.written), real_source, strict=True)
            and contains(_resolve(pair.to_dir.written), real_target, strict=True)
            for pair in candidates
        ):
            raise Forbidden(refusal)
        return source, target, real_source, real_target

    def _check_transfer(self, source: Path, target: Path, overwrite: bool) -> None:
        if not source.exists():
            raise NotFound("fromFile does not exist")
        contains = self._policy.contains
        if contains(source, target, strict=False) or contains(target, source, strict=False):
            raise BadRequest("fromFile and toFile must not be the same or inside each other")
        if not os.path.lexists(target):
            return
        if not overwrite:
            raise Conflict("toFile already exists and overwrite is false")
        if source.samefile(target):
            raise BadRequest("fromFile and toFile are the same file")
        if source.is_dir() != target.is_dir():
            raise Conflict("toFile exists and is not the same kind (file/directory) as fromFile")

    # -- audit -----------------------------------------------------------------------------

    @contextmanager
    def _audited(
        self, client: str, operation: str, failure: str, **paths: str | None
    ) -> Iterator[None]:
        """Log one audit line; turn unexpected errors into a 500 with a fixed message."""
        shown = " ".join(f"{name}={value!r}" for name, value in paths.items())
        try:
            yield
        except ApiError as exc:
            _audit.warning(
                "client=%s op=%s %s outcome=%s %s", client, operation, shown, exc.status, exc
            )
            raise
        except Exception as exc:
            _log.exception("File operation %s failed (%s)", operation, shown)
            _audit.warning("client=%s op=%s %s outcome=500 %s", client, operation, shown, failure)
            raise ApiError(failure) from exc
        _audit.info("client=%s op=%s %s outcome=ok", client, operation, shown)


# -- path resolution -------------------------------------------------------------------------


def _resolve(path: PurePath) -> Path:
    """The path the OS would open, following every link that exists."""
    try:
        return Path(path).resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        raise BadRequest("Path cannot be resolved (link loop or unreadable folder)") from exc


def _resolve_entry(path: PurePath) -> Path:
    """Resolve all but the last name, so that deleting a link removes the link only."""
    if path.name in ("", ".."):
        return _resolve(path)
    return _resolve(path.parent) / path.name


# -- primitives ------------------------------------------------------------------------------


def _staging_name(folder: Path) -> Path:
    return folder / f".butler-{uuid.uuid4().hex}.tmp"


def _is_link(info: os.stat_result) -> bool:
    """Symlinks, and on Windows junctions too.

    Other reparse points (deduplicated or cloud placeholder files) are ordinary files here.
    """
    tag = getattr(info, "st_reparse_tag", 0)
    return stat.S_ISLNK(info.st_mode) or tag in _LINK_REPARSE_TAGS


def _remove_entry(path: Path) -> None:
    """Remove a file, a link (never its target), or a folder tree."""
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and not _is_link(info):
        shutil.rmtree(path)
    else:
        path.unlink()


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise Conflict("A file with that name already exists") from exc


def _publish(staged: Path, target: Path, overwrite: bool) -> None:
    """Put ``staged`` in place at ``target`` (same volume); without overwrite never clobber.

    A hard link fails atomically when the target exists. File systems without hard links
    fall back to rename, which refuses to replace on Windows; elsewhere only a narrow
    check-then-rename window remains.
    """
    if overwrite:
        staged.replace(target)
        return
    try:
        os.link(staged, target)
    except FileExistsError as exc:
        raise Conflict("toFile already exists and overwrite is false") from exc
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise
        _rename_no_clobber(staged, target)
    else:
        staged.unlink()


def _rename_no_clobber(source: Path, target: Path) -> None:
    if os.path.lexists(target):
        raise Conflict("toFile already exists and overwrite is false")
    try:
        source.rename(target)
    except OSError as exc:
        if exc.errno in _CONFLICT_ERRNOS:
            raise Conflict("toFile already exists and overwrite is false") from exc
        raise


def _copy_file(source: Path, target: Path, overwrite: bool, preserve_timestamp: bool) -> None:
    staged = _staging_name(target.parent)
    try:
        shutil.copyfile(source, staged)
        if preserve_timestamp:
            shutil.copystat(source, staged)
        else:
            shutil.copymode(source, staged)
        _publish(staged, target, overwrite)
    finally:
        staged.unlink(missing_ok=True)


def _copy_dir(source: Path, target: Path, overwrite: bool, preserve_timestamp: bool) -> None:
    """New targets are built under a temporary name; existing ones are merged (fs-extra)."""
    if overwrite and os.path.lexists(target):
        _copy_tree(source, target, preserve_timestamp)
        return
    staged = _staging_name(target.parent)
    try:
        _copy_tree(source, staged, preserve_timestamp)
        _rename_no_clobber(staged, target)
    except BaseException:
        if os.path.lexists(staged):
            shutil.rmtree(staged)
        raise


def _copy_tree(source: Path, target: Path, preserve_timestamp: bool) -> None:
    """Copy ``source`` into ``target``, replacing (never following) links found in ``target``."""
    if os.path.lexists(target) and not _is_real_dir(target):
        _remove_entry(target)
    target.mkdir(exist_ok=True)
    with os.scandir(source) as entries:
        for entry in entries:
            child_source, child_target = Path(entry.path), target / entry.name
            info = entry.stat(follow_symlinks=False)
            if _is_link(info):
                _copy_link(child_source, child_target, entry.is_dir())
            elif stat.S_ISDIR(info.st_mode):
                _copy_tree(child_source, child_target, preserve_timestamp)
            elif _is_real_dir(child_target):
                raise Conflict("toFile holds a directory where fromFile holds a file")
            else:
                _copy_file(child_source, child_target, True, preserve_timestamp)
    if preserve_timestamp:
        shutil.copystat(source, target)


def _is_real_dir(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and not _is_link(info)


def _copy_link(source: Path, target: Path, is_dir: bool) -> None:
    if os.path.lexists(target):
        _remove_entry(target)
    target.symlink_to(source.readlink(), target_is_directory=is_dir)


def _move_file(source: Path, target: Path, overwrite: bool) -> None:
    try:
        _publish(source, target, overwrite)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_file(source, target, overwrite, True)
        source.unlink()


def _move_dir(source: Path, target: Path, overwrite: bool) -> None:
    """Replace an existing target only once the source is in place (set aside, then drop)."""
    aside = None
    if overwrite and os.path.lexists(target):
        aside = _staging_name(target.parent)
        target.rename(aside)
    try:
        _rename_dir(source, target)
    except BaseException:
        if aside is not None:
            aside.rename(target)
        raise
    if aside is not None:
        _remove_entry(aside)


def _rename_dir(source: Path, target: Path) -> None:
    try:
        _rename_no_clobber(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_dir(source, target, False, True)
        shutil.rmtree(source)
