"""Pure path decisions for the file-operation endpoints.

Everything here works on ``PurePath`` objects and never touches the file system, so the
rules can be tested for Windows paths (the production OS) and POSIX paths on any machine:
build a :class:`PathPolicy` with ``PureWindowsPath`` or ``PurePosixPath``. The I/O module
(the ``operations`` module) applies the same containment rules a second time to the paths the
operating system resolved (symlinks, junctions), so a decision here is necessary but never
sufficient for an operation to go ahead.

Rules, in short:

* Request paths must be absolute. The original resolved relative paths against the process
  working directory, which for a Windows service is ``C:\\Windows\\System32``; a caller that
  sends one gets a 400 naming the field instead of a surprise.
* Backslashes are separators (on POSIX they are turned into ``/`` as the original did), ``.``
  and repeated separators are dropped, ``..`` is resolved lexically and clamped at the root,
  the way the OS does it. Nothing is percent-decoded: ``%2F`` is three literal characters.
* NUL and other control characters, overlong paths or segments are refused. On Windows,
  names the OS would silently rewrite or treat as devices (trailing dots or spaces,
  ``CON``, ``NUL``, ``COM1``...), reserved characters (including ``:`` for alternate data
  streams) and the ``\\\\?\\`` / ``\\\\.\\`` device namespaces are refused too.
* UNC paths are accepted on Windows only.
* Containment is segment-wise, so ``/data/qvd2`` is not inside ``/data/qvd``. On Windows it
  ignores ASCII case only: full Unicode folding (German sharp s against ``SS``) could equate
  names that NTFS keeps apart, which would be an escape; folding less only ever refuses.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath, PureWindowsPath

from butler.errors import BadRequest, Forbidden

NATIVE_FLAVOUR: type[PurePath] = type(PurePath())
MAX_PATH_LENGTH = 4096
MAX_SEGMENT_LENGTH = 255

_WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{n}" for device in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_WINDOWS_FORBIDDEN_CHARACTERS = frozenset('<>:"|?*')
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_WINDOWS_DEVICE_PREFIXES = ("\\\\?\\", "\\\\.\\")


@dataclass(frozen=True)
class CheckedPath:
    """A validated absolute path in two forms.

    ``written`` keeps the caller's ``..`` segments so the OS can resolve them against real
    symlinks (on POSIX ``link/..`` is the link target's parent, not the link's folder);
    ``normal`` is the lexical form used for the first approval test and echoed back.
    """

    written: PurePath
    normal: PurePath

    @property
    def display(self) -> str:
        """Forward-slash form, as the original echoed paths (``C:/data/x.qvd``)."""
        return self.normal.as_posix()


@dataclass(frozen=True)
class DirectoryPair:
    """One ``{fromDirectory, toDirectory}`` entry of the copy or move approvals."""

    from_dir: CheckedPath
    to_dir: CheckedPath


class PathPolicy:
    """Validation, normalisation and approval of paths for one path flavour."""

    def __init__(
        self,
        flavour: type[PurePath] = NATIVE_FLAVOUR,
        *,
        max_length: int = MAX_PATH_LENGTH,
    ) -> None:
        self.flavour = flavour
        self.windows = issubclass(flavour, PureWindowsPath)
        self.max_length = max_length

    # -- parsing ---------------------------------------------------------------------------

    def parse(self, raw: str | None, field: str, operation: str) -> CheckedPath:
        """Validate a caller-supplied absolute path; raise ``BadRequest`` when unusable."""
        if raw is None or raw == "":
            raise BadRequest("Required parameter missing")
        self._check_text(raw, field)
        text = self.native_separators(raw)
        if self._looks_unc(text) and not self.windows:
            raise BadRequest(
                f"UNC paths not supported for {operation} operations when running Butler "
                f"on non-Windows OS. Path: {raw}"
            )
        written = self.flavour(text)
        if self.windows:
            self._check_windows_anchor(text, written, field)
        if not written.is_absolute():
            raise BadRequest(f"{field} must be an absolute path")
        self._check_segments(written, field)
        return CheckedPath(written, self.normalise(written))

    def parse_config_dir(self, raw: str, key: str) -> CheckedPath:
        """Validate an approved directory from the config; ``ValueError`` names the key."""
        try:
            return self.parse(raw, key, "file")
        except BadRequest as exc:
            raise ValueError(f"{key}: {exc.message}") from exc

    def parse_below(
        self, base: CheckedPath, raw: str | None, field: str, refusal: str
    ) -> CheckedPath:
        """Join a caller-supplied path below ``base``; ``Forbidden(refusal)`` if it escapes.

        The original joined rather than resolved (``/sub`` landed below the QVD folder), so
        leading separators are dropped; a drive or UNC prefix cannot be joined and is
        refused like any other escape.
        """
        if raw is None:
            raise BadRequest("Required parameter missing")
        self._check_text(raw, field)
        relative = self.flavour(self.native_separators(raw))
        if relative.drive:
            raise Forbidden(refusal)
        parts = relative.parts[1:] if relative.root else relative.parts
        self._check_segments(self.flavour(*parts), field)
        written = base.written.joinpath(*parts)
        if len(str(written)) > self.max_length:
            raise BadRequest(f"{field} is too long")
        target = CheckedPath(written, self.normalise(written))
        if not self.contains(base.normal, target.normal, strict=False):
            raise Forbidden(refusal)
        return target

    def native_separators(self, raw: str) -> str:
        """Backslashes are separators for every caller, as in the original (upath)."""
        return raw if self.windows else raw.replace("\\", "/")

    def normalise(self, path: PurePath) -> PurePath:
        """Drop ``.``, resolve ``..`` lexically; ``..`` at the root stays at the root."""
        parts: list[str] = []
        for part in path.parts[1:] if path.anchor else path.parts:
            if part == "..":
                if parts:
                    parts.pop()
            elif part != ".":
                parts.append(part)
        return self.flavour(path.anchor, *parts)

    # -- containment and approval ----------------------------------------------------------

    def contains(self, parent: PurePath, child: PurePath, *, strict: bool) -> bool:
        """Segment-wise test; ``strict`` excludes ``parent`` itself.

        Both paths must already be normalised (lexically or by the OS).
        """
        parent_key, child_key = self._key(parent), self._key(child)
        if len(child_key) < len(parent_key) or (strict and len(child_key) == len(parent_key)):
            return False
        return child_key[: len(parent_key)] == parent_key

    def approved_pairs(
        self, pairs: Iterable[DirectoryPair], source: PurePath, destination: PurePath
    ) -> list[DirectoryPair]:
        """Pairs whose source folder holds ``source`` and whose target holds ``destination``.

        Both ends must be strictly below the approved folders (the original tested the
        file's parent folder), and one pair must approve both.
        """
        return [
            pair
            for pair in pairs
            if self.contains(pair.from_dir.normal, source, strict=True)
            and self.contains(pair.to_dir.normal, destination, strict=True)
        ]

    def approved_dirs(
        self, directories: Iterable[CheckedPath], path: PurePath, *, strict: bool
    ) -> list[CheckedPath]:
        """Approved folders that hold ``path`` (strictly below them when ``strict``)."""
        return [d for d in directories if self.contains(d.normal, path, strict=strict)]

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, path: PurePath) -> tuple[str, ...]:
        parts = path.parts
        if self.windows:
            return tuple(part.translate(_ASCII_FOLD) for part in parts)
        return tuple(parts)

    def _check_text(self, raw: str, field: str) -> None:
        if "\x00" in raw:
            raise BadRequest(f"{field} contains a NUL byte")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
            raise BadRequest(f"{field} contains control characters")
        if len(raw) > self.max_length:
            raise BadRequest(f"{field} is too long")

    @staticmethod
    def _looks_unc(text: str) -> bool:
        return len(text) >= 2 and text[0] in "/\\" and text[1] in "/\\"

    def _check_windows_anchor(self, text: str, written: PurePath, field: str) -> None:
        if text.replace("/", "\\").startswith(_WINDOWS_DEVICE_PREFIXES):
            raise BadRequest(f"{field} uses a Windows device namespace path, which is not allowed")
        drive = written.drive
        if drive.startswith("\\\\"):
            self._check_unc_drive(drive, field)
        elif self._looks_unc(text):
            raise BadRequest(f"{field} is not a valid UNC path")
        elif drive and not (len(drive) == 2 and drive[0] in string.ascii_letters):
            raise BadRequest(f"{field} has an invalid drive")

    def _check_unc_drive(self, drive: str, field: str) -> None:
        names = drive[2:].split("\\")
        if len(names) != 2 or not all(names):
            raise BadRequest(f"{field} is not a valid UNC path")
        for name in names:
            self._check_windows_name(name, field)

    def _check_segments(self, path: PurePath, field: str) -> None:
        for part in path.parts[1:] if path.anchor else path.parts:
            if len(part) > MAX_SEGMENT_LENGTH:
                raise BadRequest(f"{field} has a path segment that is too long")
            if self.windows and part not in (".", ".."):
                self._check_windows_name(part, field)

    @staticmethod
    def _check_windows_name(name: str, field: str) -> None:
        if any(ch in _WINDOWS_FORBIDDEN_CHARACTERS for ch in name):
            raise BadRequest(f"{field} contains characters that Windows does not allow in names")
        if name.endswith((".", " ")):
            raise BadRequest(f"{field} has a name ending in a dot or a space")
        stem = name.split(".", 1)[0].rstrip(" ").upper()
        if stem in _WINDOWS_RESERVED_NAMES:
            raise BadRequest(f"{field} uses a reserved Windows device name")
