"""The Windows handle checks, run here: pure decisions, and the guard over a scripted kernel.

Windows cannot run here, so the kernel32 layer is replaced by :class:`ScriptedKernel`, which
answers each path from a table (what ``CreateFileW`` opens, its attributes and reparse tag,
its final path) and records every call. That is enough to prove the decisions and their
order: what is refused, which handle is used, with which access and share mode, and that
every handle opened is closed again.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import stat
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from types import SimpleNamespace
from typing import Any

import pytest

from butler_plugins.file_ops import windows_handles as wh
from butler_plugins.file_ops.folder import is_link
from butler_plugins.file_ops.windows_handles import Entry, Guard, Held, LinkFound, Misplaced

ROOT = "C:\\approved"
DIR = wh.FILE_ATTRIBUTE_DIRECTORY
FILE = 0x80  # FILE_ATTRIBUTE_NORMAL
REPARSE = wh.FILE_ATTRIBUTE_REPARSE_POINT
DEDUP = 0x8000_0013  # IO_REPARSE_TAG_DEDUP
CLOUD = 0x9000_001A  # IO_REPARSE_TAG_CLOUD_1
LX_SYMLINK = 0xA000_001D


def verbatim(path: str) -> str:
    return "\\\\?\\" + path


@dataclass
class Node:
    """What a path opens: its final path, attributes, tag, and what opening it following gives."""

    final: str
    attributes: int = FILE
    tag: int = 0
    followed: Node | None = None


@dataclass
class ScriptedKernel:
    nodes: dict[str, Node]
    created: dict[str, Node] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    open_handles: dict[int, Node] = field(default_factory=dict)
    _next: int = 100

    def open(self, path: str, access: int, share: int, disposition: int, flags: int) -> int:
        self.calls.append(("open", path, access, share, disposition, flags, len(self.open_handles)))
        if disposition == wh.CREATE_NEW:
            if path in self.nodes:
                raise FileExistsError(errno.EEXIST, "exists", path)
            self.nodes[path] = self.created.get(path, Node(verbatim(path)))
        if path not in self.nodes:
            raise FileNotFoundError(errno.ENOENT, "not found", path)
        node = self.nodes[path]
        if not flags & wh.FILE_FLAG_OPEN_REPARSE_POINT and node.followed is not None:
            node = node.followed
        self._next += 1
        self.open_handles[self._next] = node
        return self._next

    def close(self, handle: int) -> None:
        self.calls.append(("close", handle))
        del self.open_handles[handle]

    def attribute_tag(self, handle: int) -> tuple[int, int]:
        node = self.open_handles[handle]
        return node.attributes, node.tag

    def final_path(self, handle: int) -> str:
        self.calls.append(("final_path", handle))
        return self.open_handles[handle].final

    def delete(self, handle: int) -> None:
        self.calls.append(("delete", handle))

    def rename(self, handle: int, new_path: str) -> None:
        self.calls.append(("rename", handle, new_path))
        self.open_handles[handle].final = self.created.get(new_path, Node(verbatim(new_path))).final

    def to_fd(self, handle: int) -> int:
        self.calls.append(("to_fd", handle))
        del self.open_handles[handle]
        return 1000 + handle

    def opens(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == "open"]

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


def scripted(**nodes: Node) -> tuple[ScriptedKernel, Guard, Held]:
    """A kernel knowing the approved root and ``nodes`` (names below it), its guard, the root."""
    table = {ROOT: Node(verbatim(ROOT), DIR)}
    table.update({f"{ROOT}\\{name}": node for name, node in nodes.items()})
    kernel = ScriptedKernel(table)
    guard = Guard(kernel)
    return kernel, guard, guard.open_root(ROOT)


def entry(parent: Held, name: str, base: str = ROOT) -> Entry:
    return Entry(parent, f"{base}\\{name}", name)


def only_root_open(kernel: ScriptedKernel, root: Held) -> bool:
    return list(kernel.open_handles) == [root.handle]


# -- decisions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\\\\?\\C:\\Data\\QVD", "C:\\Data\\QVD"),
        ("\\\\?\\UNC\\server\\share\\qvd", "\\\\server\\share\\qvd"),
        ("\\\\?\\unc\\server\\share\\qvd", "\\\\server\\share\\qvd"),
        ("C:\\Data", "C:\\Data"),
        ("\\\\?\\C:\\", "C:\\"),
    ],
)
def test_final_paths_lose_their_verbatim_prefix(raw: str, plain: str) -> None:
    assert wh.final_path(raw) == PureWindowsPath(plain)
    assert wh.final_path(raw).is_absolute()


def test_a_volume_guid_path_lies_inside_nothing() -> None:
    final = wh.final_path("\\\\?\\Volume{0b1c2d3e-0000-0000-0000-100000000000}\\qvd\\a")
    assert not wh.inside(final, PureWindowsPath("C:\\"))
    assert not wh.inside(final, final)


@pytest.mark.parametrize(
    ("path", "root", "strict", "expected"),
    [
        ("C:\\Data\\QVD\\a.qvd", "c:\\data\\qvd", True, True),
        ("c:\\data\\qvd", "C:\\Data\\QVD", False, True),
        ("c:\\data\\qvd", "C:\\Data\\QVD", True, False),
        ("C:\\Data\\QVD2\\a.qvd", "C:\\Data\\QVD", False, False),
        ("C:\\Data\\a.qvd", "C:\\Data\\QVD", False, False),
        ("D:\\Data\\QVD\\a.qvd", "C:\\Data\\QVD", False, False),
        ("C:\\Data\\QVD\\..\\secret", "C:\\Data\\QVD", False, False),
        ("\\\\SERVER\\Share\\qvd\\a", "\\\\server\\share\\qvd", True, True),
        ("\\\\other\\share\\qvd\\a", "\\\\server\\share\\qvd", False, False),
        ("Data\\QVD\\a", "Data\\QVD", False, False),
        ("C:\\Straße\\a", "C:\\Strasse", False, False),
        ("C:\\Å\\a", "C:\\å", False, False),
        ("C:\\Å\\a", "C:\\Å", True, True),
    ],
)
def test_containment_is_by_segment_ignoring_ascii_case_only(
    path: str, root: str, strict: bool, expected: bool
) -> None:
    assert wh.inside(PureWindowsPath(path), PureWindowsPath(root), strict=strict) is expected


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ("C:\\approved\\sub\\a.qvd", True),
        ("c:\\APPROVED\\SUB\\A.QVD", True),
        ("C:\\approved\\other\\a.qvd", False),
        ("C:\\approved\\sub\\deeper\\a.qvd", False),
        ("C:\\outside\\sub\\a.qvd", False),
    ],
)
def test_placed_means_directly_in_the_parent_and_strictly_inside_the_root(
    final: str, expected: bool
) -> None:
    parent, root = PureWindowsPath("C:\\approved\\sub"), PureWindowsPath("C:\\approved")
    assert wh.placed(PureWindowsPath(final), parent, root) is expected


def test_an_entry_is_never_placed_as_its_root() -> None:
    root = PureWindowsPath("C:\\")
    assert not wh.placed(root, root, root)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (wh.IO_REPARSE_TAG_SYMLINK, True),
        (wh.IO_REPARSE_TAG_MOUNT_POINT, True),
        (LX_SYMLINK, True),
        (DEDUP, False),
        (CLOUD, False),
        (0, False),
    ],
)
def test_name_surrogate_tags_redirect_and_others_do_not(tag: int, expected: bool) -> None:
    assert wh.redirects(tag) is expected


def test_is_link_of_an_lstat_follows_the_same_rule() -> None:
    def info(tag: int) -> Any:
        return SimpleNamespace(st_mode=stat.S_IFDIR | 0o755, st_reparse_tag=tag)

    assert is_link(info(wh.IO_REPARSE_TAG_MOUNT_POINT))
    assert is_link(info(LX_SYMLINK))
    assert not is_link(info(DEDUP))
    assert not is_link(SimpleNamespace(st_mode=stat.S_IFREG | 0o644))


# -- the guard -------------------------------------------------------------------------------


def test_held_folders_take_part_in_sharing_and_do_not_share_delete() -> None:
    kernel, guard, root = scripted(sub=Node(verbatim(f"{ROOT}\\sub"), DIR))
    held = guard.open_folder(entry(root, "sub"))
    (
        (_, _, root_access, root_share, _, root_flags, _),
        (_, _, access, share, disposition, flags, _),
    ) = kernel.opens()
    for access_mask, share_mode in ((root_access, root_share), (access, share)):
        assert access_mask & wh.FILE_LIST_DIRECTORY  # attribute-only handles bind no share mode
        assert not access_mask & wh.DELETE
        assert share_mode == wh.FILE_SHARE_READ | wh.FILE_SHARE_WRITE
    assert disposition == wh.OPEN_EXISTING
    assert flags & wh.FILE_FLAG_OPEN_REPARSE_POINT and flags & wh.FILE_FLAG_BACKUP_SEMANTICS
    assert not root_flags & wh.FILE_FLAG_OPEN_REPARSE_POINT  # links in the config are fine
    assert held.final == PureWindowsPath(f"{ROOT}\\sub") and held.root == root.final
    guard.close(held)
    assert only_root_open(kernel, root)


def test_a_folder_held_for_deletion_asks_for_delete_access() -> None:
    kernel, guard, root = scripted(sub=Node(verbatim(f"{ROOT}\\sub"), DIR))
    held = guard.open_folder(entry(root, "sub"), delete=True)
    guard.delete_held(held)
    guard.close(held)
    assert kernel.opens()[-1][2] & wh.DELETE
    assert kernel.called("delete") == [("delete", held.handle)]


@pytest.mark.parametrize("tag", [wh.IO_REPARSE_TAG_MOUNT_POINT, wh.IO_REPARSE_TAG_SYMLINK])
def test_a_junction_or_symlink_is_refused_before_its_final_path_is_read(tag: int) -> None:
    outside = Node(verbatim("C:\\outside"), DIR | REPARSE, tag)
    kernel, guard, root = scripted(sub=outside)
    with pytest.raises(LinkFound) as refused:
        guard.open_folder(entry(root, "sub"))
    assert refused.value.name == "sub" and refused.value.tag == tag
    assert len(kernel.called("final_path")) == 1  # the root's only
    assert only_root_open(kernel, root)


def test_a_symlinked_file_is_refused_not_read() -> None:
    kernel, guard, root = scripted(
        **{"a.qvd": Node(verbatim(f"{ROOT}\\a.qvd"), FILE | REPARSE, wh.IO_REPARSE_TAG_SYMLINK)}
    )
    with pytest.raises(LinkFound):
        guard.read(entry(root, "a.qvd"))
    assert kernel.called("to_fd") == []
    assert only_root_open(kernel, root)


@pytest.mark.parametrize(
    "final",
    ["C:\\outside\\sub", "C:\\approved\\other\\sub", "C:\\approved2\\sub", "D:\\approved\\sub"],
)
def test_a_handle_whose_final_path_is_not_where_its_name_says_is_refused(final: str) -> None:
    kernel, guard, root = scripted(sub=Node(verbatim(final), DIR))
    with pytest.raises(Misplaced) as refused:
        guard.open_folder(entry(root, "sub"))
    assert refused.value.final == PureWindowsPath(final)
    assert only_root_open(kernel, root)


def test_a_file_where_a_folder_is_expected_is_not_a_directory() -> None:
    kernel, guard, root = scripted(sub=Node(verbatim(f"{ROOT}\\sub"), FILE))
    with pytest.raises(NotADirectoryError):
        guard.open_folder(entry(root, "sub"))
    assert only_root_open(kernel, root)


def test_the_root_must_be_a_folder_with_a_dos_path() -> None:
    kernel = ScriptedKernel(
        {
            "C:\\file.txt": Node(verbatim("C:\\file.txt"), FILE),
            "C:\\mounted": Node("\\\\?\\Volume{0b1c2d3e-0000-0000-0000-100000000000}\\", DIR),
        }
    )
    guard = Guard(kernel)
    with pytest.raises(NotADirectoryError):
        guard.open_root("C:\\file.txt")
    with pytest.raises(Misplaced):
        guard.open_root("C:\\mounted")
    assert kernel.open_handles == {}


def test_a_file_is_read_through_the_handle_that_was_checked() -> None:
    kernel, guard, root = scripted(**{"a.qvd": Node(verbatim(f"{ROOT}\\a.qvd"))})
    fd = guard.read(entry(root, "a.qvd"))
    (_, path, access, share, _, flags, _) = kernel.opens()[-1]
    handle = kernel.called("final_path")[-1][1]
    assert path == f"{ROOT}\\a.qvd"
    assert access & wh.GENERIC_READ and not share & wh.FILE_SHARE_DELETE
    assert flags & wh.FILE_FLAG_OPEN_REPARSE_POINT
    assert kernel.called("to_fd") == [("to_fd", handle)] and fd == 1000 + handle
    assert only_root_open(kernel, root)


@pytest.mark.parametrize("tag", [DEDUP, CLOUD])
def test_a_deduplicated_or_cloud_file_is_read_through_its_filter_while_pinned(tag: int) -> None:
    final = verbatim(f"{ROOT}\\a.qvd")
    kernel, guard, root = scripted(**{"a.qvd": Node(final, FILE | REPARSE, tag, Node(final))})
    guard.read(entry(root, "a.qvd"))
    first, second = kernel.opens()[1:]
    assert first[5] & wh.FILE_FLAG_OPEN_REPARSE_POINT
    assert second[5] == 0  # following, so that the filter supplies the data
    assert second[6] == 2  # the root and the first handle were still open: the name was pinned
    (_, fd_handle) = kernel.called("to_fd")[0]
    assert fd_handle != kernel.called("close")[0][1]  # the first one closed, the second read
    assert only_root_open(kernel, root)


def test_a_reopened_file_that_is_elsewhere_is_refused() -> None:
    node = Node(verbatim(f"{ROOT}\\a.qvd"), FILE | REPARSE, DEDUP, Node(verbatim("C:\\secret")))
    kernel, guard, root = scripted(**{"a.qvd": node})
    with pytest.raises(Misplaced):
        guard.read(entry(root, "a.qvd"))
    assert kernel.called("to_fd") == []
    assert only_root_open(kernel, root)


def test_a_created_folder_that_resolves_elsewhere_is_reported_and_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel, guard, root = scripted(new=Node(verbatim("C:\\outside\\new"), DIR))
    with caplog.at_level(logging.ERROR), pytest.raises(Misplaced):
        guard.check_created(entry(root, "new"))
    assert "Created folder C:\\approved\\new is not where it was made" in caplog.text
    assert "C:\\outside\\new" in caplog.text
    assert only_root_open(kernel, root)


def test_a_created_folder_in_place_passes_and_is_closed() -> None:
    kernel, guard, root = scripted(new=Node(verbatim(f"{ROOT}\\new"), DIR))
    guard.check_created(entry(root, "new"))
    assert only_root_open(kernel, root)


def test_a_created_file_is_new_unshared_and_opened_as_itself() -> None:
    kernel, guard, root = scripted(**{"old.qvd": Node(verbatim(f"{ROOT}\\old.qvd"))})
    guard.create(entry(root, "new.qvd"))
    (_, _, access, share, disposition, flags, _) = kernel.opens()[-1]
    assert disposition == wh.CREATE_NEW and access & wh.GENERIC_WRITE
    assert access & wh.DELETE and access & wh.FILE_READ_ATTRIBUTES  # to remove it, to check it
    assert share == wh.FILE_SHARE_READ and flags & wh.FILE_FLAG_OPEN_REPARSE_POINT
    with pytest.raises(FileExistsError):
        guard.create(entry(root, "old.qvd"))
    assert only_root_open(kernel, root)


def test_a_created_file_that_resolves_elsewhere_is_removed_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel, guard, root = scripted()
    kernel.created[f"{ROOT}\\new.qvd"] = Node(verbatim("C:\\outside\\new.qvd"))
    with caplog.at_level(logging.ERROR), pytest.raises(Misplaced):
        guard.create(entry(root, "new.qvd"))
    handle = kernel.called("final_path")[-1][1]
    assert kernel.calls[-2:] == [("delete", handle), ("close", handle)]
    assert kernel.called("to_fd") == []
    assert "Created file C:\\approved\\new.qvd is not where it was made" in caplog.text


def test_delete_checks_the_handle_then_deletes_through_it() -> None:
    link = Node(verbatim(f"{ROOT}\\link"), DIR | REPARSE, wh.IO_REPARSE_TAG_MOUNT_POINT)
    kernel, guard, root = scripted(link=link)
    guard.delete(entry(root, "link"))  # a link itself may go: it is never followed
    (_, _, access, _, _, flags, _) = kernel.opens()[-1]
    handle = kernel.called("final_path")[-1][1]
    assert access & wh.DELETE and flags & wh.FILE_FLAG_OPEN_REPARSE_POINT
    assert kernel.calls[-3:] == [("final_path", handle), ("delete", handle), ("close", handle)]
    assert only_root_open(kernel, root)


def test_delete_of_a_handle_outside_deletes_nothing() -> None:
    kernel, guard, root = scripted(**{"x.qvd": Node(verbatim("C:\\outside\\x.qvd"))})
    with pytest.raises(Misplaced):
        guard.delete(entry(root, "x.qvd"))
    assert kernel.called("delete") == []
    assert only_root_open(kernel, root)


def test_rename_goes_through_the_checked_handle_and_is_checked_after() -> None:
    kernel, guard, root = scripted(**{"a.qvd": Node(verbatim(f"{ROOT}\\a.qvd"))})
    guard.rename(entry(root, "a.qvd"), entry(root, "b.qvd"))
    (_, _, access, share, _, flags, _) = kernel.opens()[-1]
    handle = kernel.called("rename")[0][1]
    assert access & wh.DELETE and not share & wh.FILE_SHARE_DELETE
    assert flags & wh.FILE_FLAG_OPEN_REPARSE_POINT
    assert kernel.calls[-4:] == [
        ("final_path", handle),
        ("rename", handle, f"{ROOT}\\b.qvd"),
        ("final_path", handle),
        ("close", handle),
    ]
    assert only_root_open(kernel, root)


def test_rename_of_a_handle_outside_renames_nothing() -> None:
    kernel, guard, root = scripted(**{"a.qvd": Node(verbatim("C:\\outside\\a.qvd"))})
    with pytest.raises(Misplaced):
        guard.rename(entry(root, "a.qvd"), entry(root, "b.qvd"))
    assert kernel.called("rename") == []
    assert only_root_open(kernel, root)


def test_a_rename_that_lands_elsewhere_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    kernel, guard, root = scripted(**{"a.qvd": Node(verbatim(f"{ROOT}\\a.qvd"))})
    kernel.created[f"{ROOT}\\b.qvd"] = Node(verbatim("C:\\outside\\b.qvd"))
    with caplog.at_level(logging.ERROR), pytest.raises(Misplaced):
        guard.rename(entry(root, "a.qvd"), entry(root, "b.qvd"))
    assert "Renamed C:\\approved\\a.qvd is not where it was put" in caplog.text
    assert only_root_open(kernel, root)


def test_a_pinned_entry_is_held_unshared_for_the_block_only() -> None:
    kernel, guard, root = scripted(**{"a.qvd": Node(verbatim(f"{ROOT}\\a.qvd"))})
    with guard.pinned(entry(root, "a.qvd")):
        (_, _, access, share, _, _, _) = kernel.opens()[-1]
        assert len(kernel.open_handles) == 2
        assert access & wh.GENERIC_READ and not share & wh.FILE_SHARE_DELETE
    assert only_root_open(kernel, root)


def test_a_link_is_not_pinned_and_the_block_does_not_run() -> None:
    link = Node(verbatim("C:\\outside\\secret"), FILE | REPARSE, wh.IO_REPARSE_TAG_SYMLINK)
    kernel, guard, root = scripted(**{"a.qvd": link})
    ran = []
    with pytest.raises(LinkFound), guard.pinned(entry(root, "a.qvd")):
        ran.append(True)
    assert ran == []
    assert only_root_open(kernel, root)


def test_a_missing_entry_is_the_os_error_and_leaves_nothing_open() -> None:
    kernel, guard, root = scripted()
    for attempt in (guard.read, guard.delete, guard.open_folder):
        with pytest.raises(FileNotFoundError):
            attempt(entry(root, "gone"))
    assert only_root_open(kernel, root)


# -- the structures kernel32 is given -------------------------------------------------------


def test_info_structures_have_the_winbase_layout() -> None:
    assert ctypes.sizeof(wh.AttributeTagInfo) == 8
    assert wh.AttributeTagInfo.ReparseTag.offset == 4
    assert ctypes.sizeof(wh.DispositionInfo) == 1
    pointer = ctypes.sizeof(ctypes.c_void_p)
    assert wh.RenameInfo.RootDirectory.offset == pointer  # after the 4-byte union, aligned
    assert wh.RenameInfo.FileNameLength.offset == 2 * pointer
    assert wh.RenameInfo.FileName.offset == 2 * pointer + 4
    assert ctypes.sizeof(wh.RenameInfo) == (24 if pointer == 8 else 16)


@pytest.mark.parametrize(
    "path", ["C:\\approved\\to\\b.qvd", "C:\\approved\\\U0001d4ac.qvd", "C:\\a"]
)
def test_rename_info_replaces_with_a_full_utf16_path_and_no_root(path: str) -> None:
    buffer = wh.rename_info(path)
    info = wh.RenameInfo.from_buffer(buffer)
    encoded = path.encode("utf-16-le")
    offset = wh.RenameInfo.FileName.offset
    assert buffer.raw[0] == 1  # ReplaceIfExists, the BOOLEAN in the union's first byte
    assert info.RootDirectory is None
    assert info.FileNameLength == len(encoded)
    assert buffer.raw[offset : offset + len(encoded) + 2] == encoded + b"\0\0"
    assert len(buffer) >= ctypes.sizeof(wh.RenameInfo)
