"""Escape attempts against the file endpoints: each is refused and nothing changes.

Real attempts go over HTTP against a sandbox (see conftest): approved folders ``$F`` (copy
and move source), ``$T`` (destination), ``$D`` (delete), ``$Q`` (QVD), ``$M`` (createdir),
siblings with the same prefix (``from2``, ``to2``...), an ``$O`` outside folder, and links
from every approved folder to the outside. The whole tree is snapshotted before and after
each refused call. Windows forms (drives, UNC, device paths, trailing dots) cannot exist on
this machine, so they are checked against the pure policy with ``PureWindowsPath``.
"""

from __future__ import annotations

from pathlib import PureWindowsPath
from typing import Any

import pytest

from butler.errors import ApiError
from butler_plugins.file_ops.policy import PathPolicy
from tests.fileops.conftest import Sandbox

COPY = ("PUT", "/v4/filecopy")
MOVE = ("PUT", "/v4/filemove")
DELETE = ("DELETE", "/v4/filedelete")
QVD = ("POST", "/v4/createdirqvd")
MKDIR = ("POST", "/v4/createdir")

LONG = "a/" * 2100
HUGE_NAME = "n" * 300

# (id, route, body, expected status)
ATTEMPTS: list[tuple[str, tuple[str, str], dict[str, Any], int]] = [
    # copy
    (
        "copy-dotdot-source",
        COPY,
        {"fromFile": "$F/../../outside/secret.qvd", "toFile": "$T/x"},
        403,
    ),
    (
        "copy-dotdot-target",
        COPY,
        {"fromFile": "$F/a.qvd", "toFile": "$T/../../outside/new.qvd"},
        403,
    ),
    (
        "copy-zigzag-target",
        COPY,
        {"fromFile": "$F/a.qvd", "toFile": "$T/../to/../../outside/x"},
        403,
    ),
    ("copy-absolute-outside-target", COPY, {"fromFile": "$F/a.qvd", "toFile": "$O/new.qvd"}, 403),
    (
        "copy-absolute-outside-source",
        COPY,
        {"fromFile": "$O/secret.qvd", "toFile": "$T/x.qvd"},
        403,
    ),
    ("copy-prefix-source", COPY, {"fromFile": "${F}2/f.qvd", "toFile": "$T/x.qvd"}, 403),
    ("copy-prefix-target", COPY, {"fromFile": "$F/a.qvd", "toFile": "${T}2/x.qvd"}, 403),
    ("copy-reverse-direction", COPY, {"fromFile": "$T/y.qvd", "toFile": "$F/y.qvd"}, 403),
    ("copy-approved-dir-itself", COPY, {"fromFile": "$F", "toFile": "$T/all"}, 403),
    ("copy-onto-target-dir-itself", COPY, {"fromFile": "$F/a.qvd", "toFile": "$T"}, 403),
    ("copy-root-clamp", COPY, {"fromFile": "/../../../$O/secret.qvd", "toFile": "$T/x"}, 403),
    (
        "copy-symlinked-dir-source",
        COPY,
        {"fromFile": "$F/link_out/secret.qvd", "toFile": "$T/x"},
        403,
    ),
    ("copy-symlinked-file-source", COPY, {"fromFile": "$F/file_link.qvd", "toFile": "$T/x"}, 403),
    (
        "copy-symlinked-dir-target",
        COPY,
        {"fromFile": "$F/a.qvd", "toFile": "$T/link_out/x.qvd"},
        403,
    ),
    (
        "copy-write-through-file-link",
        COPY,
        {"fromFile": "$F/a.qvd", "toFile": "$T/file_link.qvd", "overwrite": True},
        403,
    ),
    (
        "copy-link-then-dotdot",
        COPY,
        {"fromFile": "$F/a.qvd", "toFile": "$T/link_out/../pwn.qvd"},
        403,
    ),
    (
        "copy-backslashes",
        COPY,
        {"fromFile": "$F\\..\\..\\outside\\secret.qvd", "toFile": "$T/x"},
        403,
    ),
    (
        "copy-mixed-separators",
        COPY,
        {"fromFile": "$F/..\\../outside\\secret.qvd", "toFile": "$T/x"},
        403,
    ),
    ("copy-relative", COPY, {"fromFile": "approved/from/a.qvd", "toFile": "$T/x"}, 400),
    ("copy-relative-dotdot", COPY, {"fromFile": "$F/a.qvd", "toFile": "../outside/x"}, 400),
    (
        "copy-nul-byte",
        COPY,
        {"fromFile": "$F/a.qvd\u0000/../../../outside/secret.qvd", "toFile": "$T/x"},
        400,
    ),
    ("copy-newline", COPY, {"fromFile": "$F/a.qvd", "toFile": "$T/x\n.qvd"}, 400),
    ("copy-overlong-path", COPY, {"fromFile": "$F/a.qvd", "toFile": f"$T/{LONG}x"}, 400),
    ("copy-overlong-name", COPY, {"fromFile": "$F/a.qvd", "toFile": f"$T/{HUGE_NAME}"}, 400),
    ("copy-unc-forward", COPY, {"fromFile": "//server/share/a.qvd", "toFile": "$T/x"}, 400),
    ("copy-unc-backslash", COPY, {"fromFile": "$F/a.qvd", "toFile": "\\\\server\\share\\x"}, 400),
    (
        "copy-encoded-source-is-literal",
        COPY,
        {"fromFile": "$F/..%2F..%2Foutside%2Fsecret.qvd", "toFile": "$T/x"},
        404,
    ),
    # move
    ("move-outside-source", MOVE, {"fromFile": "$O/secret.qvd", "toFile": "$T/x"}, 403),
    ("move-outside-target", MOVE, {"fromFile": "$F/a.qvd", "toFile": "$O/x"}, 403),
    ("move-symlinked-source", MOVE, {"fromFile": "$F/link_out/secret.qvd", "toFile": "$T/x"}, 403),
    ("move-symlinked-target", MOVE, {"fromFile": "$F/a.qvd", "toFile": "$T/link_out/x.qvd"}, 403),
    ("move-prefix-source", MOVE, {"fromFile": "$F/../from2/f.qvd", "toFile": "$T/x"}, 403),
    ("move-file-link-source", MOVE, {"fromFile": "$F/file_link.qvd", "toFile": "$T/x"}, 403),
    ("move-unc", MOVE, {"fromFile": "//srv/share/a", "toFile": "$T/x"}, 400),
    # delete
    ("delete-approved-dir", DELETE, {"deleteFile": "$D"}, 403),
    ("delete-approved-dir-trailing", DELETE, {"deleteFile": "$D/"}, 403),
    ("delete-dotdot-parent", DELETE, {"deleteFile": "$D/.."}, 403),
    ("delete-dotdot-sibling", DELETE, {"deleteFile": "$D/../del2/victim.qvd"}, 403),
    ("delete-prefix-sibling", DELETE, {"deleteFile": "${D}2/victim.qvd"}, 403),
    ("delete-through-dir-link", DELETE, {"deleteFile": "$D/link_out/secret.qvd"}, 403),
    ("delete-through-dir-link-dotdot", DELETE, {"deleteFile": "$D/link_out/../approved/del2"}, 403),
    ("delete-outside", DELETE, {"deleteFile": "$O/secret.qvd"}, 403),
    ("delete-root", DELETE, {"deleteFile": "/"}, 403),
    ("delete-relative", DELETE, {"deleteFile": "approved/del/x.qvd"}, 400),
    ("delete-nul", DELETE, {"deleteFile": "$D/x.qvd\u0000"}, 400),
    ("delete-unc", DELETE, {"deleteFile": "//srv/share/x"}, 400),
    ("delete-encoded-is-literal", DELETE, {"deleteFile": "$D/..%2F..%2Fdel2%2Fvictim.qvd"}, 404),
    # createdirqvd
    ("qvd-dotdot-sibling", QVD, {"directory": "../qvd2/x"}, 403),
    ("qvd-dotdot-outside", QVD, {"directory": "../../outside/newdir"}, 403),
    ("qvd-leading-slash-dotdot", QVD, {"directory": "/../../outside/x"}, 403),
    ("qvd-backslash-dotdot", QVD, {"directory": "..\\..\\outside\\x"}, 403),
    ("qvd-inner-dotdot", QVD, {"directory": "sub/../../qvd2"}, 403),
    ("qvd-through-link", QVD, {"directory": "link_out/newdir"}, 403),
    ("qvd-link-then-dotdot", QVD, {"directory": "link_out/../pwned"}, 403),
    ("qvd-nul", QVD, {"directory": "x\u0000y"}, 400),
    # createdir
    ("mkdir-outside", MKDIR, {"directory": "$O/newdir"}, 403),
    ("mkdir-prefix-sibling", MKDIR, {"directory": "${M}2/x"}, 403),
    ("mkdir-dotdot-sibling", MKDIR, {"directory": "$M/../mk2/x"}, 403),
    ("mkdir-through-link", MKDIR, {"directory": "$M/link_out/newdir"}, 403),
    ("mkdir-relative", MKDIR, {"directory": "newdir"}, 400),
    ("mkdir-unc", MKDIR, {"directory": "\\\\srv\\share\\x"}, 400),
]


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [pytest.param(route, body, status, id=name) for name, route, body, status in ATTEMPTS],
)
def test_attempt_is_refused_and_nothing_changes(
    sandbox: Sandbox, route: tuple[str, str], body: dict[str, Any], status: int
) -> None:
    before = sandbox.snapshot()
    response = sandbox.call(*route, body)
    assert response.status_code == status, response.text
    assert response.json()["statusCode"] == status
    assert sandbox.snapshot() == before


@pytest.mark.parametrize(
    "override", [("PUT", COPY[1]), ("DELETE", DELETE[1])], ids=["copy", "delete"]
)
def test_attempt_through_method_override_is_refused(
    sandbox: Sandbox, override: tuple[str, str]
) -> None:
    method, route = override
    body = (
        {"fromFile": "$F/../../outside/secret.qvd", "toFile": "$T/x", "overwrite": "true"}
        if route == COPY[1]
        else {"deleteFile": "$D/../del2/victim.qvd"}
    )
    before = sandbox.snapshot()
    response = sandbox.call("POST", route, body, override=method)
    assert response.status_code == 403
    assert sandbox.snapshot() == before


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Foutside%2Fpwn.qvd", "%2e%2e%5C%2e%2e%5Coutside%5Cpwn.qvd", "%2E%2E%2fpwn"],
)
def test_encoded_separators_stay_literal_names(sandbox: Sandbox, name: str) -> None:
    before = sandbox.outside_snapshot()
    response = sandbox.call(*COPY, {"fromFile": "$F/a.qvd", "toFile": f"$T/{name}"})
    assert response.status_code == 201, response.text
    assert (sandbox.root / "approved" / "to" / name).read_text() == "A"
    assert sandbox.outside_snapshot() == before


@pytest.mark.parametrize("route", [COPY, MOVE])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_tree_holding_a_link_is_neither_copied_nor_moved(
    sandbox: Sandbox, route: tuple[str, str], overwrite: bool
) -> None:
    before = sandbox.snapshot()
    body = {"fromFile": "$F/tree", "toFile": "$T/tree", "overwrite": overwrite}
    response = sandbox.call(*route, body)
    assert response.status_code == 400
    assert "links are not copied or moved" in response.json()["message"]
    assert sandbox.snapshot() == before


def test_merge_copy_replaces_links_in_the_destination_instead_of_following_them(
    sandbox: Sandbox,
) -> None:
    (sandbox.root / "approved" / "from" / "tree" / "out_link").unlink()
    target = sandbox.root / "approved" / "to" / "tree"
    target.mkdir()
    (target / "inner").symlink_to(sandbox.root / "outside" / "dir", target_is_directory=True)
    (target / "c.qvd").symlink_to(sandbox.root / "outside" / "secret.qvd")
    before = sandbox.outside_snapshot()
    response = sandbox.call(*COPY, {"fromFile": "$F/tree", "toFile": "$T/tree", "overwrite": True})
    assert response.status_code == 201
    assert not (target / "inner").is_symlink()
    assert (target / "inner" / "d.qvd").read_text() == "D"
    assert (target / "c.qvd").read_text() == "C"
    assert sandbox.outside_snapshot() == before


def test_deleting_a_link_removes_only_the_link(sandbox: Sandbox) -> None:
    before = sandbox.outside_snapshot()
    for name in ("link_out", "file_link.qvd"):
        response = sandbox.call(*DELETE, {"deleteFile": f"$D/{name}"})
        assert response.status_code == 204
        assert not (sandbox.root / "approved" / "del" / name).exists()
    after = sandbox.outside_snapshot()
    del before["approved/del/link_out"], before["approved/del/file_link.qvd"]
    assert after == before


WINDOWS = PathPolicy(PureWindowsPath)
WINDOWS_APPROVED = WINDOWS.parse("C:\\data\\qvd", "dir", "test")
WINDOWS_UNC_APPROVED = WINDOWS.parse("\\\\server\\share\\qvd", "dir", "test")
WINDOWS_FOLD_APPROVED = WINDOWS.parse("C:\\data\\strasse", "dir", "test")

WINDOWS_ATTEMPTS = [
    ("prefix-sibling", "C:\\data\\qvd2\\x.qvd"),
    ("other-drive", "D:\\data\\qvd\\x.qvd"),
    ("dotdot-to-windows", "C:\\data\\qvd\\..\\..\\Windows\\system.ini"),
    ("mixed-dotdot", "C:/data\\qvd/../qvd2\\x"),
    ("unc-instead-of-drive", "\\\\server\\share\\data\\qvd\\x"),
    ("unc-other-share", "\\\\server\\share2\\qvd\\x"),
    ("unc-dotdot-above-share", "\\\\server\\share\\qvd\\..\\..\\..\\other\\x"),
    ("device-namespace", "\\\\?\\C:\\data\\qvd\\x"),
    ("device-dot", "\\\\.\\C:\\data\\qvd\\x"),
    ("drive-relative", "C:data\\qvd\\x"),
    ("root-relative", "\\data\\qvd\\x"),
    ("alternate-data-stream", "C:\\data\\qvd\\x.qvd::$DATA"),
    ("trailing-dot-dotdot", "C:\\data\\qvd\\..."),
    ("trailing-space-dotdot", "C:\\data\\qvd\\.. \\x"),
    ("trailing-dot-name", "C:\\data\\qvd.\\x"),
    ("trailing-space-name", "C:\\data\\qvd \\x"),
    ("device-name", "C:\\data\\qvd\\CON"),
    ("device-name-extension", "C:\\data\\qvd\\aux.qvd"),
    ("nul-byte", "C:\\data\\qvd\\x\u0000.qvd"),
    ("overlong", "C:\\data\\qvd\\" + "a\\" * 2100),
    ("sharp-s-fold", "C:\\data\\stra\u00dfe\\x"),
    ("long-s-fold", "C:\\data\\\u017ftrasse\\x"),
]


@pytest.mark.parametrize(("raw"), [pytest.param(raw, id=name) for name, raw in WINDOWS_ATTEMPTS])
def test_windows_form_is_refused_by_the_policy(raw: str) -> None:
    approvals = [WINDOWS_APPROVED, WINDOWS_UNC_APPROVED, WINDOWS_FOLD_APPROVED]
    try:
        checked = WINDOWS.parse(raw, "fromFile", "file copy")
    except ApiError as exc:
        assert exc.status == 400
        return
    assert WINDOWS.approved_dirs(approvals, checked.normal, strict=True) == []


def test_windows_case_and_separator_variants_are_still_inside() -> None:
    checked = WINDOWS.parse("c:/DATA/Qvd\\sub/x.qvd", "fromFile", "file copy")
    assert WINDOWS.approved_dirs([WINDOWS_APPROVED], checked.normal, strict=True) == [
        WINDOWS_APPROVED
    ]
