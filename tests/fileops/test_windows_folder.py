"""The Windows branch of the folders (``HandleFolder``) doing real work here, on Linux.

kernel32 is played by :class:`PosixKernel`: ``O_PATH`` descriptors as handles (with
``O_NOFOLLOW`` for ``FILE_FLAG_OPEN_REPARSE_POINT``, so a link is opened as itself), ``fstat``
for the attributes, ``/proc/self/fd`` for the final path, in Windows form. What it cannot
play is the share mode: on Linux nothing is pinned. So these tests prove the wiring (every
operation goes through the checks, every handle is closed, the walk holds every step) and
that a swap made right before an open is caught by that open's check; they do not prove
what the share modes stop, which only Windows can.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from butler.errors import ApiError, BadRequest, Conflict, Forbidden
from butler_plugins.file_ops import folder as folder_module
from butler_plugins.file_ops import windows_handles as wh
from butler_plugins.file_ops.folder import Folder, HandleFolder, LinkInPath
from butler_plugins.file_ops.operations import FileOperations
from butler_plugins.file_ops.policy import DirectoryPair, PathPolicy

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="O_PATH and /proc/self/fd are Linux's"
)

POLICY = PathPolicy()


class PosixKernel:
    """kernel32 as far as Linux can play it (see the module docstring)."""

    def __init__(self) -> None:
        self.open_handles: set[int] = set()
        self.path_only: set[int] = set()  # O_PATH: a handle, not yet readable
        self.deleted: list[str] = []
        self.before_open: Callable[[str], None] | None = None
        self.rename_failures: dict[str, OSError] = {}  # by the path being renamed
        self.renamed: list[tuple[str, str]] = []

    def open(self, path: str, access: int, share: int, disposition: int, flags: int) -> int:
        if self.before_open is not None:
            self.before_open(path)
        if disposition == wh.CREATE_NEW:
            created = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            handle = os.open(path, created, 0o600)
        else:
            as_itself = os.O_NOFOLLOW if flags & wh.FILE_FLAG_OPEN_REPARSE_POINT else 0
            handle = os.open(path, os.O_PATH | os.O_CLOEXEC | as_itself)
            if not flags & wh.FILE_FLAG_BACKUP_SEMANTICS and stat.S_ISDIR(os.fstat(handle).st_mode):
                os.close(handle)
                raise PermissionError(errno.EACCES, "Access is denied", path)
            self.path_only.add(handle)
        self.open_handles.add(handle)
        return handle

    def close(self, handle: int) -> None:
        self.open_handles.remove(handle)
        self.path_only.discard(handle)
        os.close(handle)

    def attribute_tag(self, handle: int) -> tuple[int, int]:
        mode = os.fstat(handle).st_mode
        if stat.S_ISLNK(mode):
            return wh.FILE_ATTRIBUTE_REPARSE_POINT, wh.IO_REPARSE_TAG_SYMLINK
        return (wh.FILE_ATTRIBUTE_DIRECTORY if stat.S_ISDIR(mode) else 0x80), 0

    def _path(self, handle: int) -> Path:
        return Path(f"/proc/self/fd/{handle}").readlink()

    def final_path(self, handle: int) -> str:
        return "\\\\?\\Z:" + str(self._path(handle)).replace("/", "\\")

    def delete(self, handle: int) -> None:
        path = self._path(handle)
        self.deleted.append(str(path))
        if stat.S_ISDIR(os.fstat(handle).st_mode):
            path.rmdir()
        else:
            path.unlink()

    def rename(self, handle: int, new_path: str) -> None:
        path = self._path(handle)
        if str(path) in self.rename_failures:
            raise self.rename_failures[str(path)]
        self.renamed.append((str(path), new_path))
        path.rename(new_path)

    def to_fd(self, handle: int) -> int:
        self.open_handles.remove(handle)
        if handle not in self.path_only:
            return handle
        self.path_only.remove(handle)
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
        os.close(handle)
        return fd


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> PosixKernel:
    """Folders are opened as on Windows, with this kernel."""
    kernel = PosixKernel()
    monkeypatch.setattr(folder_module, "_BY_FD", False)
    monkeypatch.setattr(folder_module, "_KERNEL", kernel)
    return kernel


@pytest.fixture
def area(tmp_path: Path) -> Path:
    for name in ("src", "dst", "del", "qvd", "mk", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "src" / "a.qvd").write_text("A")
    (tmp_path / "src" / "tree" / "inner").mkdir(parents=True)
    (tmp_path / "src" / "tree" / "inner" / "d.qvd").write_text("D")
    (tmp_path / "outside" / "secret.qvd").write_text("SECRET")
    return tmp_path


def operations(root: Path) -> FileOperations:
    def checked(path: Path) -> Any:
        return POLICY.parse(str(path), "dir", "test")

    pair = DirectoryPair(checked(root / "src"), checked(root / "dst"))
    return FileOperations(
        policy=POLICY,
        copy_pairs=[pair],
        move_pairs=[pair],
        delete_dirs=[checked(root / "del")],
        qvd_dir=checked(root / "qvd"),
        create_dirs=[checked(root / "mk")],
    )


def swap_for_link_on_first_open(kernel: PosixKernel, path: Path, target: Path) -> None:
    """Right before ``path`` is first opened (after every check by name), make it a link."""

    def swap(opened: str) -> None:
        if opened == str(path) and not path.is_symlink():
            path.rename(path.with_name(path.name + ".real"))
            path.symlink_to(target, target_is_directory=target.is_dir())

    kernel.before_open = swap


def outside(area: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (area / "outside").iterdir() if p.is_file()}


def test_the_handle_folders_do_the_same_work(area: Path, kernel: PosixKernel) -> None:
    ops = operations(area)
    src, dst = area / "src", area / "dst"
    os.utime(src / "a.qvd", ns=(1_000_000_000, 2_000_000_000))
    ops.copy(
        "c",
        str(src / "a.qvd"),
        str(dst / "deep" / "a.qvd"),
        overwrite=False,
        preserve_timestamp=True,
    )
    assert (dst / "deep" / "a.qvd").stat().st_mtime_ns == 2_000_000_000
    ops.copy("c", str(src / "tree"), str(dst / "tree"), overwrite=False, preserve_timestamp=False)
    ops.copy(
        "c",
        str(src / "a.qvd"),
        str(dst / "deep" / "a.qvd"),
        overwrite=True,
        preserve_timestamp=False,
    )
    ops.move("c", str(src / "a.qvd"), str(dst / "moved.qvd"), overwrite=False)
    ops.move("c", str(src / "tree"), str(dst / "tree"), overwrite=True)
    assert kernel.open_handles == set()
    assert (dst / "deep" / "a.qvd").read_text() == "A"
    assert (dst / "deep" / "a.qvd").stat().st_mtime_ns != 2_000_000_000
    assert (dst / "tree" / "inner" / "d.qvd").read_text() == "D" and not (src / "tree").exists()
    assert (dst / "moved.qvd").read_text() == "A" and not (src / "a.qvd").exists()
    (area / "del" / "x" / "y").mkdir(parents=True)
    (area / "del" / "x" / "y" / "z.qvd").write_text("Z")
    ops.delete("c", str(area / "del" / "x"))
    assert not (area / "del" / "x").exists()
    ops.create_dir("c", str(area / "mk" / "a" / "b"))
    ops.create_qvd_dir("c", "c/d")
    assert (area / "mk" / "a" / "b").is_dir() and (area / "qvd" / "c" / "d").is_dir()
    assert kernel.open_handles == set()
    assert list(area.rglob(".butler-*")) == []


def test_a_tree_is_deleted_entry_by_entry_through_handles(area: Path, kernel: PosixKernel) -> None:
    tree = area / "del" / "x"
    (tree / "y").mkdir(parents=True)
    (tree / "y" / "z.qvd").write_text("Z")
    (tree / "w.qvd").write_text("W")
    operations(area).delete("c", str(tree))
    assert sorted(kernel.deleted) == sorted(
        str(p) for p in (tree, tree / "y", tree / "y" / "z.qvd", tree / "w.qvd")
    )
    assert kernel.deleted[-1] == str(tree)  # the folder itself once it is empty
    assert kernel.deleted.index(str(tree / "y")) > kernel.deleted.index(str(tree / "y" / "z.qvd"))


def test_every_folder_on_the_walk_stays_held_until_the_end(area: Path, kernel: PosixKernel) -> None:
    with Folder.open_root(area / "src") as root:
        assert isinstance(root, HandleFolder)
        with root.walk(["tree", "inner"]) as inner:
            assert len(kernel.open_handles) == 3  # root, tree, inner: none closed on the way
            assert [name for name in inner.names()] == ["d.qvd"]
        assert len(kernel.open_handles) == 1
    assert kernel.open_handles == set()


def test_a_folder_swapped_for_a_link_before_its_open_is_refused(
    area: Path, kernel: PosixKernel
) -> None:
    (area / "del" / "sub").mkdir()
    (area / "del" / "sub" / "x.qvd").write_text("X")
    (area / "outside" / "x.qvd").write_text("OUT")
    swap_for_link_on_first_open(kernel, area / "del" / "sub", area / "outside")
    with pytest.raises(Forbidden, match="symbolic link or junction"):
        operations(area).delete("c", str(area / "del" / "sub" / "x.qvd"))
    assert outside(area) == {"secret.qvd": "SECRET", "x.qvd": "OUT"}
    assert kernel.open_handles == set()


def test_a_file_swapped_for_a_link_before_it_is_read_is_refused(
    area: Path, kernel: PosixKernel
) -> None:
    swap_for_link_on_first_open(kernel, area / "src" / "a.qvd", area / "outside" / "secret.qvd")
    with pytest.raises(Forbidden):
        operations(area).copy(
            "c",
            str(area / "src" / "a.qvd"),
            str(area / "dst" / "a.qvd"),
            overwrite=False,
            preserve_timestamp=False,
        )
    assert list((area / "dst").iterdir()) == []
    assert kernel.open_handles == set()


def test_a_hard_link_source_swapped_for_a_link_is_refused(area: Path, kernel: PosixKernel) -> None:
    swap_for_link_on_first_open(kernel, area / "src" / "a.qvd", area / "outside" / "secret.qvd")
    with pytest.raises(Forbidden):
        operations(area).move(
            "c", str(area / "src" / "a.qvd"), str(area / "dst" / "a.qvd"), overwrite=False
        )
    assert list((area / "dst").iterdir()) == []
    assert outside(area) == {"secret.qvd": "SECRET"}


def test_a_link_renamed_into_place_is_taken_out_again(area: Path, kernel: PosixKernel) -> None:
    (area / "dst" / "a.qvd").write_text("OLD")
    swap_for_link_on_first_open(kernel, area / "src" / "a.qvd", area / "outside" / "secret.qvd")
    with pytest.raises(Conflict, match="replaced by a link"):
        operations(area).move(
            "c", str(area / "src" / "a.qvd"), str(area / "dst" / "a.qvd"), overwrite=True
        )
    assert not (area / "dst" / "a.qvd").is_symlink()
    assert outside(area) == {"secret.qvd": "SECRET"}


def test_a_created_folder_swapped_before_its_check_is_reported_and_not_used(
    area: Path, kernel: PosixKernel, caplog: pytest.LogCaptureFixture
) -> None:
    swap_for_link_on_first_open(kernel, area / "mk" / "a", area / "outside")
    with caplog.at_level(logging.ERROR), pytest.raises(Forbidden):
        operations(area).create_dir("c", str(area / "mk" / "a" / "b"))
    assert f"Created folder {area / 'mk' / 'a'} is not where it was made" in caplog.text
    assert sorted(p.name for p in (area / "outside").iterdir()) == ["secret.qvd"]  # no "b"
    assert kernel.open_handles == set()


def test_deleting_links_removes_the_links_only(area: Path, kernel: PosixKernel) -> None:
    (area / "del" / "dir_link").symlink_to(area / "outside", target_is_directory=True)
    (area / "del" / "tree").mkdir()
    (area / "del" / "tree" / "file_link").symlink_to(area / "outside" / "secret.qvd")
    ops = operations(area)
    ops.delete("c", str(area / "del" / "dir_link"))
    ops.delete("c", str(area / "del" / "tree"))
    assert list((area / "del").iterdir()) == []
    assert outside(area) == {"secret.qvd": "SECRET"}


def test_links_in_a_tree_are_still_refused(area: Path, kernel: PosixKernel) -> None:
    (area / "src" / "tree" / "link").symlink_to(area / "outside", target_is_directory=True)
    (area / "mk" / "link").symlink_to(area / "outside", target_is_directory=True)
    ops = operations(area)
    with pytest.raises(BadRequest, match="links are not copied or moved"):
        ops.copy(
            "c",
            str(area / "src" / "tree"),
            str(area / "dst" / "t"),
            overwrite=False,
            preserve_timestamp=False,
        )
    with (
        Folder.open_root(area / "mk") as folder,
        pytest.raises(LinkInPath),
        folder.walk(["link", "new"], create=True),
    ):
        pass
    assert sorted(p.name for p in (area / "outside").iterdir()) == ["secret.qvd"]
    assert kernel.open_handles == set()


def _no_links_across(monkeypatch: pytest.MonkeyPatch, source: Path) -> None:
    real = os.link

    def link(first: Any, *args: Any, **kwargs: Any) -> None:
        if Path(first) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(first, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_move_across_volumes_falls_back_to_copy_and_delete(
    area: Path, kernel: PosixKernel, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    source = area / "src" / "a.qvd"
    _no_links_across(monkeypatch, source)
    kernel.rename_failures[str(source)] = OSError(errno.EXDEV, "Invalid cross-device link")
    if overwrite:
        (area / "dst" / "a.qvd").write_text("OLD")
    operations(area).move("c", str(source), str(area / "dst" / "a.qvd"), overwrite=overwrite)
    assert not source.exists() and str(source) in kernel.deleted
    assert (area / "dst" / "a.qvd").read_text() == "A"
    assert list(area.rglob(".butler-*")) == [] and kernel.open_handles == set()


def test_a_folder_move_across_volumes_falls_back_to_copy_and_delete(
    area: Path, kernel: PosixKernel
) -> None:
    source = area / "src" / "tree"
    kernel.rename_failures[str(source)] = OSError(errno.EXDEV, "Invalid cross-device link")
    operations(area).move("c", str(source), str(area / "dst" / "tree"), overwrite=False)
    assert not source.exists()
    assert (area / "dst" / "tree" / "inner" / "d.qvd").read_text() == "D"
    assert list(area.rglob(".butler-*")) == [] and kernel.open_handles == set()


def test_a_failed_folder_move_puts_the_replaced_folder_back(
    area: Path, kernel: PosixKernel
) -> None:
    (area / "dst" / "tree").mkdir()
    (area / "dst" / "tree" / "keep.qvd").write_text("KEEP")
    source = area / "src" / "tree"
    kernel.rename_failures[str(source)] = PermissionError(errno.EACCES, "in use")
    with pytest.raises(ApiError) as err:
        operations(area).move("c", str(source), str(area / "dst" / "tree"), overwrite=True)
    assert err.value.status == 500
    assert len(kernel.renamed) == 2  # set aside, then back after the move failed
    assert (area / "dst" / "tree" / "keep.qvd").read_text() == "KEEP"
    assert (source / "inner" / "d.qvd").exists()
    assert list(area.rglob(".butler-*")) == [] and kernel.open_handles == set()
