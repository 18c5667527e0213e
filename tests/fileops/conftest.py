"""A sandbox folder tree with approved folders, an outside world and links between them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest
import requests


@dataclass
class Sandbox:
    root: Path
    url: str

    @property
    def names(self) -> dict[str, str]:
        approved = self.root / "approved"
        return {
            "R": str(self.root),
            "F": str(approved / "from"),
            "T": str(approved / "to"),
            "D": str(approved / "del"),
            "Q": str(approved / "qvd"),
            "M": str(approved / "mk"),
            "O": str(self.root / "outside"),
        }

    def fill(self, value: Any) -> Any:
        """Expand ``$F``-style names (see :attr:`names`) in strings of a request body."""
        if isinstance(value, str):
            return Template(value).substitute(self.names)
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        return value

    def call(
        self, method: str, route: str, body: Any = None, override: str | None = None
    ) -> requests.Response:
        """One request; ``override`` sends it as POST + X-HTTP-Method-Override like Qlik."""
        headers = {}
        if override is not None:
            headers["X-HTTP-Method-Override"] = override
        json_body = None if body is None else self.fill(body)
        return requests.request(
            method, f"{self.url}{route}", json=json_body, headers=headers, timeout=10
        )

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Every entry below the root: links by target, files by content and mtime."""
        state: dict[str, tuple[Any, ...]] = {}
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(folder) / name
                info = path.lstat()
                key = path.relative_to(self.root).as_posix()
                if path.is_symlink():
                    state[key] = ("link", str(path.readlink()))
                elif path.is_dir():
                    state[key] = ("dir",)
                else:
                    state[key] = ("file", path.read_bytes(), info.st_mtime_ns)
        return state

    def outside_snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Everything except the approved destination folders, which may legitimately change."""
        changing = ("approved/to/", "approved/qvd/", "approved/mk/")
        return {
            key: value
            for key, value in self.snapshot().items()
            if not key.startswith(changing) and key not in ("approved/to", "approved/qvd")
        }


def build_tree(root: Path) -> None:
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.qvd").write_text("SECRET")
    (outside / "dir" / "z.qvd").write_text("Z")
    approved = root / "approved"
    for name in ("from", "to", "del", "qvd", "mk", "from2", "to2", "del2", "qvd2", "mk2"):
        (approved / name).mkdir(parents=True)
    (approved / "from" / "a.qvd").write_text("A")
    (approved / "from" / "sub").mkdir()
    (approved / "from" / "sub" / "b.qvd").write_text("B")
    tree = approved / "from" / "tree"
    (tree / "inner").mkdir(parents=True)
    (tree / "c.qvd").write_text("C")
    (tree / "inner" / "d.qvd").write_text("D")
    (tree / "out_link").symlink_to(outside, target_is_directory=True)
    (approved / "from2" / "f.qvd").write_text("F2")
    (approved / "to" / "existing.qvd").write_text("OLD")
    (approved / "to" / "y.qvd").write_text("Y")
    (approved / "del" / "x.qvd").write_text("X")
    (approved / "del" / "sub").mkdir()
    (approved / "del" / "sub" / "y.qvd").write_text("Y")
    (approved / "del2" / "victim.qvd").write_text("VICTIM")
    for name in ("from", "to", "del", "qvd", "mk"):
        (approved / name / "link_out").symlink_to(outside, target_is_directory=True)
    for name in ("from", "to", "del"):
        (approved / name / "file_link.qvd").symlink_to(outside / "secret.qvd")


def sandbox_config(root: Path) -> dict[str, Any]:
    approved = root / "approved"
    pair = [{"fromDirectory": str(approved / "from"), "toDirectory": str(approved / "to")}]
    return {
        "restServerEndpointsEnable": {
            "fileCopy": True,
            "fileMove": True,
            "fileDelete": True,
            "createDirQVD": True,
            "createDir": True,
        },
        "fileCopyApprovedDirectories": pair,
        "fileMoveApprovedDirectories": pair,
        "fileDeleteApprovedDirectories": [str(approved / "del")],
        "createDirApprovedDirectories": [str(approved / "mk")],
        "configDirectories": {"qvdPath": str(approved / "qvd")},
    }


@pytest.fixture
def sandbox(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    live_server: Callable[..., str],
) -> Sandbox:
    root = tmp_path / "sandbox"
    build_tree(root)
    app = make_app(make_config(sandbox_config(root)))
    return Sandbox(root, live_server(app))
