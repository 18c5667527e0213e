"""A folder inside an approved folder is swapped with a symlink to the outside, atomically and
without pause, while file operations run over HTTP: not one of them may reach the outside.

The swap is ``renameat2(RENAME_EXCHANGE)`` of a real folder ``sub`` and a link ``alt``, the
attack that redirected 197 to 590 of 1,500 calls when paths were checked and then reopened
by name. Each operation either works on the real folder or is refused; the outside folders
are compared before and after, and the destination must hold no link and no outside data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROUNDS = 150
AT_FDCWD = -100
RENAME_EXCHANGE = 2

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")


def _renameat2() -> Callable[[Path, Path], None]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("libc has no renameat2")
    call = libc.renameat2

    def exchange(a: Path, b: Path) -> None:
        if call(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return exchange


class Swapper:
    """Swaps ``sub`` and ``alt`` in each folder until stopped."""

    def __init__(self, folders: list[Path]):
        self.folders = folders
        self.swaps = 0
        self._stop = threading.Event()
        self._exchange = _renameat2()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for folder in self.folders:
                self._exchange(folder / "sub", folder / "alt")
                self.swaps += 1

    def __enter__(self) -> Swapper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def snapshot(root: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            state[key] = (
                "link" if path.is_symlink() else "dir" if path.is_dir() else path.read_text()
            )
    return state


@pytest.fixture
def race(
    tmp_path: Path, make_config: Callable[..., Any], make_app: Callable[..., Any], live_server: Any
) -> Iterator[tuple[str, Path]]:
    approved, outside = tmp_path / "approved", tmp_path / "outside"
    (approved / "to").mkdir(parents=True)
    for area in ("from", "del", "mk"):
        (approved / area / "sub").mkdir(parents=True)
        (outside / area).mkdir(parents=True)
        (approved / area / "alt").symlink_to(outside / area, target_is_directory=True)
    for i in range(ROUNDS):
        for area in ("from", "del"):
            (approved / area / "sub" / f"f{i}.qvd").write_text("INSIDE")
            (outside / area / f"f{i}.qvd").write_text("SECRET")
    pair = [{"fromDirectory": str(approved / "from"), "toDirectory": str(approved / "to")}]
    config = make_config(
        {
            "restServerEndpointsEnable": {
                "fileCopy": True,
                "fileMove": True,
                "fileDelete": True,
                "createDir": True,
            },
            "fileCopyApprovedDirectories": pair,
            "fileMoveApprovedDirectories": pair,
            "fileDeleteApprovedDirectories": [str(approved / "del")],
            "createDirApprovedDirectories": [str(approved / "mk")],
        }
    )
    yield live_server(make_app(config)), tmp_path


def test_swapping_a_folder_for_a_link_never_lets_an_operation_out(
    race: tuple[str, Path],
) -> None:
    url, root = race
    approved, outside = root / "approved", root / "outside"
    before = snapshot(outside)
    statuses: dict[str, list[int]] = {"copy": [], "move": [], "delete": [], "mkdir": []}
    areas = [approved / area for area in ("from", "del", "mk")]
    with Swapper(areas) as swapper, requests.Session() as http:
        for i in range(ROUNDS):
            calls = {
                "copy": (
                    "PUT",
                    "/v4/filecopy",
                    {"fromFile": f"{approved}/from/sub/f{i}.qvd", "toFile": f"{approved}/to/c{i}"},
                ),
                "move": (
                    "PUT",
                    "/v4/filemove",
                    {"fromFile": f"{approved}/from/sub/f{i}.qvd", "toFile": f"{approved}/to/m{i}"},
                ),
                "delete": (
                    "DELETE",
                    "/v4/filedelete",
                    {"deleteFile": f"{approved}/del/sub/f{i}.qvd"},
                ),
                "mkdir": ("POST", "/v4/createdir", {"directory": f"{approved}/mk/sub/n{i}"}),
            }
            for name, (method, path, body) in calls.items():
                response = http.request(method, url + path, json=body, timeout=10)
                statuses[name].append(response.status_code)
    assert swapper.swaps > ROUNDS
    assert snapshot(outside) == before
    written = snapshot(approved / "to")
    assert "SECRET" not in written.values()
    assert "link" not in written.values()
    for name, codes in statuses.items():
        assert set(codes) <= {201, 204, 400, 403, 404, 409}, (name, sorted(set(codes)))
        assert 500 not in codes
