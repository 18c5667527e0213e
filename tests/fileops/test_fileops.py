"""FileOperations on a real file system: fallbacks, races, errors and audit lines."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from butler.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from butler_plugins.file_ops import folder as folder_module
from butler_plugins.file_ops import operations as fileops
from butler_plugins.file_ops import transfer
from butler_plugins.file_ops.folder import Folder
from butler_plugins.file_ops.operations import FileOperations
from butler_plugins.file_ops.policy import DirectoryPair, PathPolicy

POLICY = PathPolicy()


def checked(path: Path) -> Any:
    return POLICY.parse(str(path), "dir", "test")


@pytest.fixture
def area(tmp_path: Path) -> Path:
    for name in ("src", "dst", "del", "qvd", "mk"):
        (tmp_path / name).mkdir()
    (tmp_path / "src" / "a.qvd").write_text("A")
    (tmp_path / "src" / "tree" / "inner").mkdir(parents=True)
    (tmp_path / "src" / "tree" / "inner" / "d.qvd").write_text("D")
    return tmp_path


def operations(root: Path, **overrides: Any) -> FileOperations:
    pair = DirectoryPair(checked(root / "src"), checked(root / "dst"))
    settings: dict[str, Any] = {
        "copy_pairs": [pair],
        "move_pairs": [pair],
        "delete_dirs": [checked(root / "del")],
        "qvd_dir": checked(root / "qvd"),
        "create_dirs": [checked(root / "mk")],
    }
    settings.update(overrides)
    return FileOperations(policy=POLICY, **settings)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".butler-*")]


def test_unexpected_os_error_is_a_safe_500_with_an_audit_line(
    area: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/internal/secret/path")

    monkeypatch.setattr(transfer, "copy_data", broken)
    ops = operations(area)
    with caplog.at_level(logging.INFO), pytest.raises(ApiError) as err:
        ops.copy(
            "10.0.0.9",
            str(area / "src/a.qvd"),
            str(area / "dst/a.qvd"),
            overwrite=False,
            preserve_timestamp=False,
        )
    assert err.value.status == 500
    assert err.value.message == "Failed copying file"
    audit = [r.getMessage() for r in caplog.records if r.name == "butler.audit"]
    assert len(audit) == 1
    assert audit[0].startswith("client=10.0.0.9 op=copy ")
    assert audit[0].endswith("outcome=500 Failed copying file")
    assert not (area / "dst" / "a.qvd").exists()
    assert leftovers(area) == []


def test_each_operation_audits_its_name(area: Path, caplog: pytest.LogCaptureFixture) -> None:
    ops = operations(area)
    (area / "del" / "x").write_text("x")
    with caplog.at_level(logging.INFO, logger="butler.audit"):
        ops.copy(
            "c",
            str(area / "src/a.qvd"),
            str(area / "dst/a.qvd"),
            overwrite=False,
            preserve_timestamp=False,
        )
        ops.move("c", str(area / "src/a.qvd"), str(area / "dst/b.qvd"), overwrite=False)
        ops.delete("c", str(area / "del/x"))
        ops.create_qvd_dir("c", "new")
        ops.create_dir("c", str(area / "mk/new"))
    ops_logged = [r.getMessage().split()[1] for r in caplog.records if r.name == "butler.audit"]
    assert ops_logged == ["op=copy", "op=move", "op=delete", "op=createdirqvd", "op=createdir"]


def test_copy_without_hard_links_still_refuses_to_clobber(
    area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: Any, **__: Any) -> None:
        raise PermissionError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(fileops.os, "link", no_links)
    ops = operations(area)
    src, dst = str(area / "src/a.qvd"), str(area / "dst/a.qvd")
    ops.copy("c", src, dst, overwrite=False, preserve_timestamp=False)
    assert (area / "dst" / "a.qvd").read_text() == "A"
    (area / "src" / "a.qvd").write_text("NEW")
    with pytest.raises(Conflict):
        ops.copy("c", src, dst, overwrite=False, preserve_timestamp=False)
    assert (area / "dst" / "a.qvd").read_text() == "A"
    assert leftovers(area) == []


def test_publish_never_replaces_a_target_that_appeared_meanwhile(tmp_path: Path) -> None:
    staged, target = tmp_path / "staged", tmp_path / "target"
    staged.write_text("new")
    target.write_text("someone else's")
    with Folder.open_root(tmp_path) as folder, pytest.raises(Conflict):
        transfer.publish(folder, "staged", folder, "target", overwrite=False)
    assert target.read_text() == "someone else's"
    assert staged.read_text() == "new"


def test_copy_overwrite_replaces_a_file_atomically(area: Path) -> None:
    (area / "dst" / "a.qvd").write_text("OLD")
    inode_before = (area / "dst" / "a.qvd").stat().st_ino
    ops = operations(area)
    ops.copy(
        "c",
        str(area / "src/a.qvd"),
        str(area / "dst/a.qvd"),
        overwrite=True,
        preserve_timestamp=False,
    )
    assert (area / "dst" / "a.qvd").read_text() == "A"
    assert (area / "dst" / "a.qvd").stat().st_ino != inode_before
    assert leftovers(area) == []


def test_copy_tree_preserves_timestamps(area: Path) -> None:
    source = area / "src" / "tree" / "inner" / "d.qvd"
    os.utime(source, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    operations(area).copy(
        "c",
        str(area / "src/tree"),
        str(area / "dst/tree"),
        overwrite=False,
        preserve_timestamp=True,
    )
    assert (area / "dst/tree/inner/d.qvd").stat().st_mtime_ns == 1_500_000_000_000_000_000


def test_copy_same_file_through_a_hard_link_is_400(area: Path) -> None:
    os.link(area / "src" / "a.qvd", area / "dst" / "a.qvd")
    with pytest.raises(BadRequest, match="same file"):
        operations(area).copy(
            "c",
            str(area / "src/a.qvd"),
            str(area / "dst/a.qvd"),
            overwrite=True,
            preserve_timestamp=False,
        )
    assert (area / "src" / "a.qvd").read_text() == "A"


def test_copy_directory_onto_a_file_is_409(area: Path) -> None:
    (area / "dst" / "tree").write_text("file")
    with pytest.raises(Conflict, match="same kind"):
        operations(area).copy(
            "c",
            str(area / "src/tree"),
            str(area / "dst/tree"),
            overwrite=True,
            preserve_timestamp=False,
        )
    assert (area / "dst" / "tree").read_text() == "file"


def test_move_into_itself_is_400(area: Path) -> None:
    pair = DirectoryPair(checked(area), checked(area))
    ops = operations(area, move_pairs=[pair])
    with pytest.raises(BadRequest, match="inside each other"):
        ops.move("c", str(area / "src/tree"), str(area / "src/tree/inner/x"), overwrite=False)
    with pytest.raises(BadRequest, match="inside each other"):
        ops.move("c", str(area / "src/tree/inner"), str(area / "src/tree"), overwrite=True)
    assert (area / "src" / "tree" / "inner" / "d.qvd").read_text() == "D"


def test_link_loop_is_400(area: Path) -> None:
    (area / "del" / "loop").symlink_to(area / "del" / "loop")
    with pytest.raises(BadRequest, match="cannot be resolved"):
        operations(area).delete("c", str(area / "del" / "loop" / "x"))


def test_createdir_restrictions(area: Path, tmp_path: Path) -> None:
    with pytest.raises(Forbidden):
        operations(area, create_dirs=[]).create_dir("c", str(area / "mk" / "x"))
    operations(area, create_dirs=None).create_dir("c", str(tmp_path / "free" / "x"))
    assert (tmp_path / "free" / "x").is_dir()
    operations(area).create_dir("c", str(area / "mk"))
    assert (area / "mk").is_dir()


def _cross_device(real: Any, source: Path) -> Any:
    """``real`` (an ``os`` call taking a name and a folder descriptor) failing with EXDEV."""

    def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
        if str(first) == source.name:
            refusals.append(first)
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(first, *args, **kwargs)

    refusals: list[Any] = []
    wrapper.refusals = refusals  # type: ignore[attr-defined]
    return wrapper


@pytest.mark.parametrize("overwrite", [False, True])
def test_file_move_falls_back_to_copy_across_volumes(
    area: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    source = area / "src" / "a.qvd"
    link, rename = _cross_device(os.link, source), _cross_device(os.rename, source)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "rename", rename)
    if overwrite:
        (area / "dst" / "a.qvd").write_text("OLD")
    operations(area).move("c", str(source), str(area / "dst/a.qvd"), overwrite=overwrite)
    assert link.refusals or rename.refusals
    assert not source.exists()
    assert (area / "dst" / "a.qvd").read_text() == "A"
    assert leftovers(area) == []


def test_directory_move_falls_back_to_copy_across_volumes(
    area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = area / "src" / "tree"
    rename = _cross_device(os.rename, source)
    monkeypatch.setattr(os, "rename", rename)
    operations(area).move("c", str(source), str(area / "dst/tree"), overwrite=False)
    assert rename.refusals
    assert not source.exists()
    assert (area / "dst" / "tree" / "inner" / "d.qvd").read_text() == "D"
    assert leftovers(area) == []


def test_directory_move_overwrite_restores_the_target_when_the_move_fails(
    area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (area / "dst" / "tree").mkdir()
    (area / "dst" / "tree" / "keep.qvd").write_text("KEEP")
    source = area / "src" / "tree"
    real_rename = os.rename

    def failing(first: Any, *args: Any, **kwargs: Any) -> Any:
        if str(first) == source.name:
            raise PermissionError(errno.EACCES, "in use")
        return real_rename(first, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(ApiError) as err:
        operations(area).move("c", str(source), str(area / "dst/tree"), overwrite=True)
    assert err.value.status == 500
    assert (area / "dst" / "tree" / "keep.qvd").read_text() == "KEEP"
    assert (source / "inner" / "d.qvd").exists()
    assert leftovers(area) == []


@pytest.fixture
def other_volume(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system available")
    folder = Path(tempfile.mkdtemp(dir=shm))
    yield folder
    shutil.rmtree(folder)


def test_real_move_across_file_systems(area: Path, other_volume: Path) -> None:
    (other_volume / "tree" / "sub").mkdir(parents=True)
    (other_volume / "tree" / "sub" / "x.qvd").write_text("X")
    (other_volume / "f.qvd").write_text("F")
    pair = DirectoryPair(checked(other_volume), checked(area / "dst"))
    ops = operations(area, move_pairs=[pair])
    ops.move("c", str(other_volume / "f.qvd"), str(area / "dst/f.qvd"), overwrite=False)
    ops.move("c", str(other_volume / "tree"), str(area / "dst/tree"), overwrite=False)
    assert (area / "dst" / "f.qvd").read_text() == "F"
    assert (area / "dst" / "tree" / "sub" / "x.qvd").read_text() == "X"
    assert list(other_volume.iterdir()) == []


def test_missing_approved_folders_are_created_or_reported(area: Path) -> None:
    shutil.rmtree(area / "dst")
    shutil.rmtree(area / "del")
    ops = operations(area)
    ops.copy(
        "c",
        str(area / "src/a.qvd"),
        str(area / "dst/new/a.qvd"),
        overwrite=False,
        preserve_timestamp=False,
    )
    assert (area / "dst" / "new" / "a.qvd").read_text() == "A"
    with pytest.raises(NotFound):
        ops.delete("c", str(area / "del" / "gone.qvd"))


def test_the_path_based_folders_of_windows_do_the_same_work(
    area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no dir_fd; its step-by-step checked paths run here on the same cases."""
    monkeypatch.setattr(folder_module, "_BY_FD", False)
    ops = operations(area)
    src, dst = area / "src", area / "dst"
    ops.copy(
        "c",
        str(src / "a.qvd"),
        str(dst / "deep" / "a.qvd"),
        overwrite=False,
        preserve_timestamp=True,
    )
    ops.copy("c", str(src / "tree"), str(dst / "tree"), overwrite=False, preserve_timestamp=False)
    ops.move("c", str(src / "a.qvd"), str(dst / "moved.qvd"), overwrite=False)
    assert (dst / "deep" / "a.qvd").read_text() == "A"
    assert (dst / "tree" / "inner" / "d.qvd").read_text() == "D"
    assert (dst / "moved.qvd").read_text() == "A" and not (src / "a.qvd").exists()
    (area / "del" / "x").mkdir()
    (area / "del" / "x" / "y.qvd").write_text("Y")
    ops.delete("c", str(area / "del" / "x"))
    assert not (area / "del" / "x").exists()
    ops.create_dir("c", str(area / "mk" / "a" / "b"))
    assert (area / "mk" / "a" / "b").is_dir()
    outside = area / "outside"
    outside.mkdir()
    (area / "mk" / "link").symlink_to(outside, target_is_directory=True)
    (src / "tree" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadRequest, match="links are not copied or moved"):
        ops.copy("c", str(src / "tree"), str(dst / "t3"), overwrite=False, preserve_timestamp=False)
    with monkeypatch.context() as patched:
        patched.setattr(fileops, "_resolve", lambda path: Path(path))
        with pytest.raises(Forbidden, match="symbolic link or junction"):
            ops.create_dir("c", str(area / "mk" / "link" / "new"))
    assert list(outside.iterdir()) == []
    assert leftovers(area) == []
