"""File copy, move, delete and folder creation, confined to approved folders.

Every request path passes two gates before anything is read or written: the lexical test of
the ``policy`` module (no file-system access, so a refused path is never probed), then the
same test on the path the OS resolves (symlinks, junctions, POSIX ``link/..``), compared
with the resolved approved folders. Existence is only looked at after both passed.

Then the operation runs on folders held open from the approved root down (see the
``folder`` module), so nothing swapped in after the check can redirect it: a symlink met
on the way or at the entry itself is refused (403), a file is copied from the descriptor
that was opened without following links, and no symlink is ever put into a destination
folder (a folder tree holding one is refused with 400; a link that replaced a moved entry
mid-way is removed again and the move answers 409).

Writes are staged: a copied file is written to a temporary name in the destination folder
and then renamed into place, so a destination is never seen half-written; without
``overwrite`` the final step is a hard link or a no-clobber rename, which fails instead of
replacing a file that appeared in the meantime. Links already in a destination are
replaced, never written through.

Every call writes one line to the ``butler.audit`` logger: caller, operation, the paths as
sent, and the outcome.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath

from butler.errors import ApiError, BadRequest, Conflict, FeatureUnavailable, Forbidden, NotFound
from butler_plugins.file_ops.folder import Folder, LinkInPath, is_real_dir
from butler_plugins.file_ops.policy import CheckedPath, DirectoryPair, PathPolicy
from butler_plugins.file_ops.transfer import (
    Place,
    copy_dir,
    copy_file,
    existing_entry,
    make_dirs,
    move_dir,
    move_file,
    no_link_arrived,
    parent_of,
    refuse_links,
)

AUDIT_LOGGER = "butler.audit"

_audit = logging.getLogger(AUDIT_LOGGER)
_log = logging.getLogger(__name__)

_QVD_REFUSAL = "Directory must be within the QVD folder"
_LINK_REFUSAL = "A folder or file on the path is a symbolic link or junction: refused"


@dataclass(frozen=True)
class _Transfer:
    """An approved copy or move: both folders open, the entry names, what to echo."""

    source: Folder
    target: Folder
    name: str
    new_name: str
    is_dir: bool
    shown: tuple[str, str]


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
        self._qvd_outside_scope = False
        self._narrowed: dict[tuple[str, ...], FileOperations] = {}

    # -- scopes ----------------------------------------------------------------------------

    def within(self, directories: Sequence[str] | None) -> FileOperations:
        """These operations confined to ``directories`` too (a caller's ``fileDirectories``).

        Every approved folder is cut down to the part inside the scope, so the scoped
        operations go through exactly the same lexical, resolved and held-open checks as
        unscoped ones, with the scope's folders as roots. ``createdirqvd`` joins paths below
        the QVD folder itself, so a scope must hold that whole folder for it.
        """
        if directories is None:
            return self
        key = tuple(directories)
        found = self._narrowed.get(key)
        if found is None:
            found = self._narrow([self._policy.parse_config_dir(d, "scope") for d in key])
            self._narrowed[key] = found
        return found

    def scope_fits(self, directory: str) -> bool:
        """Whether a scope folder lies inside some approved folder (a config check)."""
        scope = self._policy.parse_config_dir(directory, "scope")
        approved = [
            *(p.from_dir for p in self._copy_pairs + self._move_pairs),
            *(p.to_dir for p in self._copy_pairs + self._move_pairs),
            *self._delete_dirs,
            *([self._qvd_dir] if self._qvd_dir is not None else []),
            *(self._create_dirs or []),
        ]
        return not approved or any(
            self._policy.contains(d.normal, scope.normal, strict=False) for d in approved
        )

    def _narrow(self, scope: Sequence[CheckedPath]) -> FileOperations:
        def cut(folders: Sequence[CheckedPath]) -> list[CheckedPath]:
            return [part for folder in folders for s in scope if (part := self._meet(folder, s))]

        narrowed = FileOperations(
            policy=self._policy,
            copy_pairs=self._cut_pairs(self._copy_pairs, cut),
            move_pairs=self._cut_pairs(self._move_pairs, cut),
            delete_dirs=cut(self._delete_dirs),
            qvd_dir=self._qvd_dir,
            create_dirs=list(scope) if self._create_dirs is None else cut(self._create_dirs),
        )
        narrowed._qvd_outside_scope = self._qvd_dir is not None and not any(
            self._policy.contains(s.normal, self._qvd_dir.normal, strict=False) for s in scope
        )
        return narrowed

    @staticmethod
    def _cut_pairs(
        pairs: Sequence[DirectoryPair],
        cut: Callable[[Sequence[CheckedPath]], list[CheckedPath]],
    ) -> list[DirectoryPair]:
        return [
            DirectoryPair(source, target)
            for pair in pairs
            for source in cut([pair.from_dir])
            for target in cut([pair.to_dir])
        ]

    def _meet(self, approved: CheckedPath, scope: CheckedPath) -> CheckedPath | None:
        """The deeper of two folders when one holds the other, else ``None``."""
        if self._policy.contains(approved.normal, scope.normal, strict=False):
            return scope
        if self._policy.contains(scope.normal, approved.normal, strict=False):
            return approved
        return None

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
        with (
            self._audited(
                client, "copy", "Failed copying file", fromFile=from_file, toFile=to_file
            ),
            self._transfer(self._copy_pairs, from_file, to_file, "file copy", overwrite) as job,
        ):
            if job.is_dir:
                with job.source.child(job.name) as tree:
                    refuse_links(tree)
                    copy_dir(tree, job.target, job.new_name, overwrite, preserve_timestamp)
            else:
                copy_file(
                    job.source, job.name, job.target, job.new_name, overwrite, preserve_timestamp
                )
            return job.shown

    def move(
        self, client: str, from_file: str | None, to_file: str | None, *, overwrite: bool
    ) -> tuple[str, str]:
        """Move a file or a folder tree; return the normalised (source, destination)."""
        with (
            self._audited(client, "move", "Failed moving file", fromFile=from_file, toFile=to_file),
            self._transfer(self._move_pairs, from_file, to_file, "file move", overwrite) as job,
        ):
            if job.is_dir:
                with job.source.child(job.name) as tree:
                    refuse_links(tree)
                move_dir(job.source, job.name, job.target, job.new_name, overwrite)
            else:
                move_file(job.source, job.name, job.target, job.new_name, overwrite)
            no_link_arrived(job.target, job.new_name)
            return job.shown

    def delete(self, client: str, delete_file: str | None) -> None:
        """Delete a file, a link, or a folder tree strictly below an approved folder."""
        with self._audited(client, "delete", "Failed deleting file", deleteFile=delete_file):
            refusal = "No approved directory for file delete"
            target = self._policy.parse(delete_file, "deleteFile", "file delete")
            candidates = self._policy.approved_dirs(self._delete_dirs, target.normal, strict=True)
            if not candidates:
                raise Forbidden(refusal)
            real = _resolve_entry(target.written)
            place = self._place_in(candidates, real, strict=True)
            if place is None:
                raise Forbidden(refusal)
            try:
                with parent_of(place) as folder:
                    folder.remove(place.name)
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
            if self._qvd_outside_scope:
                raise Forbidden("The QVD folder is not inside this caller's fileDirectories scope")
            target = self._policy.parse_below(self._qvd_dir, directory, "directory", _QVD_REFUSAL)
            place = self._place_in([self._qvd_dir], _resolve(target.written), strict=False)
            if place is None:
                raise Forbidden(_QVD_REFUSAL)
            make_dirs(place)

    def create_dir(self, client: str, directory: str | None) -> None:
        """Create a folder (and its parents), inside ``createDirApprovedDirectories`` if set."""
        with self._audited(client, "createdir", "Failed to create directory", directory=directory):
            target = self._policy.parse(directory, "directory", "directory create")
            real = _resolve(target.written)
            if self._create_dirs is None:
                place: Place | None = Place.below(Path(real.anchor), real)
            else:
                candidates = self._policy.approved_dirs(
                    self._create_dirs, target.normal, strict=False
                )
                place = self._place_in(candidates, real, strict=False)
                if place is None:
                    raise Forbidden("No approved directory for directory creation")
            assert place is not None
            make_dirs(place)

    # -- approval --------------------------------------------------------------------------

    @contextmanager
    def _transfer(
        self,
        pairs: Sequence[DirectoryPair],
        from_file: str | None,
        to_file: str | None,
        operation: str,
        overwrite: bool,
    ) -> Iterator[_Transfer]:
        """Approve and check a copy or move, then hold both folders open for the work."""
        source, target, src, dst = self._approve_transfer(pairs, from_file, to_file, operation)
        self._check_transfer(src.path, dst.path, overwrite)
        with parent_of(src) as from_dir, parent_of(dst, create=True) as to_dir:
            yield _Transfer(
                source=from_dir,
                target=to_dir,
                name=src.name,
                new_name=dst.name,
                is_dir=is_real_dir(existing_entry(from_dir, src.name)),
                shown=(source.display, target.display),
            )

    def _place_in(
        self, approved: Sequence[CheckedPath], real: Path, *, strict: bool
    ) -> Place | None:
        """``real`` below the first approved folder (as resolved) that contains it."""
        for folder in approved:
            root = _resolve(folder.written)
            if self._policy.contains(root, real, strict=strict):
                return Place.below(root, real)
        return None

    def _approve_transfer(
        self,
        pairs: Sequence[DirectoryPair],
        from_file: str | None,
        to_file: str | None,
        operation: str,
    ) -> tuple[CheckedPath, CheckedPath, Place, Place]:
        refusal = f"No approved fromDir/toDir for {operation}"
        source = self._policy.parse(from_file, "fromFile", operation)
        target = self._policy.parse(to_file, "toFile", operation)
        candidates = self._policy.approved_pairs(pairs, source.normal, target.normal)
        if not candidates:
            raise Forbidden(refusal)
        real_source, real_target = _resolve(source.written), _resolve(target.written)
        for pair in candidates:
            src = self._place_in([pair.from_dir], real_source, strict=True)
            dst = self._place_in([pair.to_dir], real_target, strict=True)
            if src is not None and dst is not None:
                return source, target, src, dst
        raise Forbidden(refusal)

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
            try:
                yield
            except LinkInPath:
                raise Forbidden(_LINK_REFUSAL) from None
            except (NotADirectoryError, FileExistsError):
                raise Conflict("A file with that name already exists") from None
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
    """The path the OS would open, following every link that exists (for the check only)."""
    try:
        return Path(path).resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        raise BadRequest("Path cannot be resolved (link loop or unreadable folder)") from exc


def _resolve_entry(path: PurePath) -> Path:
    """Resolve all but the last name, so that deleting a link removes the link only."""
    if path.name in ("", ".."):
        return _resolve(path)
    return _resolve(path.parent) / path.name
