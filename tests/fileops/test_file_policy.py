"""Pure path rules, for Windows and POSIX flavours, without touching the file system."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from butler.errors import BadRequest, Forbidden
from butler_plugins.file_ops.policy import CheckedPath, DirectoryPair, PathPolicy

WIN = PathPolicy(PureWindowsPath)
POSIX = PathPolicy(PurePosixPath)


def w(text: str) -> PureWindowsPath:
    return PureWindowsPath(text)


def p(text: str) -> PurePosixPath:
    return PurePosixPath(text)


@pytest.mark.parametrize(
    ("raw", "display"),
    [
        ("C:\\data\\qvd\\..\\x.qvd", "C:/data/x.qvd"),
        ("C:/data//qvd/./x.qvd", "C:/data/qvd/x.qvd"),
        ("C:\\data/qvd\\sub/x.qvd", "C:/data/qvd/sub/x.qvd"),
        ("c:\\..\\..\\Windows", "c:/Windows"),
        ("\\\\server\\share\\a.qvd", "//server/share/a.qvd"),
        ("//server/share/dir/../a.qvd", "//server/share/a.qvd"),
        ("\\\\server\\share\\..\\..\\a.qvd", "//server/share/a.qvd"),
        ("C:\\data\\qvd\\", "C:/data/qvd"),
        ("C:\\data\\%2e%2e\\x", "C:/data/%2e%2e/x"),
    ],
)
def test_windows_normalisation(raw: str, display: str) -> None:
    assert WIN.parse(raw, "fromFile", "file copy").display == display


@pytest.mark.parametrize(
    ("raw", "display"),
    [
        ("/Users/goran/butler-test-dir1//abc//..", "/Users/goran/butler-test-dir1"),
        ("\\data\\qvd\\..\\x.qvd", "/data/x.qvd"),
        ("/data/./qvd/x.qvd", "/data/qvd/x.qvd"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/data/qvd/", "/data/qvd"),
        ("/data/..%2F..%2Fetc", "/data/..%2F..%2Fetc"),
        ("/data/%5C..%5Cx", "/data/%5C..%5Cx"),
    ],
)
def test_posix_normalisation(raw: str, display: str) -> None:
    assert POSIX.parse(raw, "fromFile", "file copy").display == display


def test_written_form_keeps_dot_dot_for_the_os() -> None:
    checked = POSIX.parse("/data/link/../x", "toFile", "file copy")
    assert checked.written == p("/data/link/../x")
    assert checked.normal == p("/data/x")


@pytest.mark.parametrize("policy", [WIN, POSIX], ids=["windows", "posix"])
@pytest.mark.parametrize("raw", [None, ""])
def test_missing_value_is_required_parameter(policy: PathPolicy, raw: str | None) -> None:
    with pytest.raises(BadRequest, match="Required parameter missing"):
        policy.parse(raw, "fromFile", "file copy")


@pytest.mark.parametrize(
    ("policy", "raw"),
    [
        (POSIX, "data/qvd/x.qvd"),
        (POSIX, "./x.qvd"),
        (POSIX, "~/x.qvd"),
        (WIN, "data\\x.qvd"),
        (WIN, "C:data\\x.qvd"),
        (WIN, "\\data\\x.qvd"),
    ],
)
def test_relative_paths_are_refused(policy: PathPolicy, raw: str) -> None:
    with pytest.raises(BadRequest, match="toFile must be an absolute path"):
        policy.parse(raw, "toFile", "file copy")


@pytest.mark.parametrize("raw", ["//server/share/x.qvd", "\\\\server\\share\\x.qvd", "///x"])
def test_unc_is_refused_on_posix_with_the_original_message(raw: str) -> None:
    with pytest.raises(BadRequest) as err:
        POSIX.parse(raw, "deleteFile", "file delete")
    assert err.value.message == (
        "UNC paths not supported for file delete operations when running Butler on "
        f"non-Windows OS. Path: {raw}"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("C:\\data\\x\x00.qvd", "NUL byte"),
        ("C:\\data\\x\n.qvd", "control characters"),
        ("C:\\" + "a\\" * 3000, "too long"),
        ("C:\\" + "a" * 256, "segment that is too long"),
        ("\\\\?\\C:\\data\\x.qvd", "device namespace"),
        ("//./C:/data/x.qvd", "device namespace"),
        ("\\\\server", "not a valid UNC path"),
        ("\\\\\\x\\y", "not a valid UNC path"),
        ("1:\\data\\x", "absolute"),
        ("C:\\data\\x.qvd:stream", "not allow"),
        ("C:\\data\\x<y", "not allow"),
        ("C:\\data\\x.qvd.", "dot or a space"),
        ("C:\\data\\.. \\x", "dot or a space"),
        ("C:\\data\\...\\x", "dot or a space"),
        ("C:\\data\\NUL", "reserved"),
        ("C:\\data\\con.txt", "reserved"),
        ("C:\\data\\COM1 .log", "reserved"),
        ("C:\\data\\lpt\u00b9", "reserved"),
        ("\\\\srv\\sh:are\\x", "not allow"),
    ],
)
def test_windows_refusals(raw: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        WIN.parse(raw, "fromFile", "file copy")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/data/x\x00.qvd", "NUL byte"),
        ("/data/x\x7f", "control characters"),
        ("/" + "a/" * 3000, "too long"),
        ("/" + "a" * 256, "segment that is too long"),
    ],
)
def test_posix_refusals(raw: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        POSIX.parse(raw, "fromFile", "file copy")


def test_posix_allows_names_windows_refuses() -> None:
    assert POSIX.parse("/data/x.qvd:1 ", "f", "op").display == "/data/x.qvd:1 "


def test_max_length_is_configurable() -> None:
    short = PathPolicy(PurePosixPath, max_length=10)
    with pytest.raises(BadRequest, match="too long"):
        short.parse("/abcdefghijk", "f", "op")


@pytest.mark.parametrize(
    ("parent", "child", "strict", "inside"),
    [
        ("/data/qvd", "/data/qvd/sub/x", True, True),
        ("/data/qvd", "/data/qvd", True, False),
        ("/data/qvd", "/data/qvd", False, True),
        ("/data/qvd", "/data/qvd2/x", False, False),
        ("/data/qvd", "/data/qv", False, False),
        ("/data/qvd", "/data", False, False),
        ("/data/qvd", "/DATA/qvd/x", False, False),
        ("/", "/anything", True, True),
    ],
)
def test_posix_containment(parent: str, child: str, strict: bool, inside: bool) -> None:
    assert POSIX.contains(p(parent), p(child), strict=strict) is inside


@pytest.mark.parametrize(
    ("parent", "child", "inside"),
    [
        ("C:\\data\\qvd", "c:\\DATA\\Qvd\\x", True),
        ("C:\\data\\qvd", "C:\\data\\qvd2\\x", False),
        ("C:\\data\\qvd", "D:\\data\\qvd\\x", False),
        ("\\\\server\\share", "\\\\SERVER\\Share\\x", True),
        ("\\\\server\\share", "\\\\server\\share2\\x", False),
        ("\\\\server\\share\\qvd", "C:\\server\\share\\qvd\\x", False),
        ("C:\\strasse", "C:\\stra\u00dfe\\x", False),
        ("C:\\STRASSE", "C:\\stra\u00dfe\\x", False),
        ("C:\\\u00c5r", "C:\\\u00e5r\\x", False),
    ],
)
def test_windows_containment(parent: str, child: str, inside: bool) -> None:
    assert WIN.contains(w(parent), w(child), strict=True) is inside


def _checked(policy: PathPolicy, raw: str) -> CheckedPath:
    return policy.parse(raw, "dir", "test")


def test_copy_needs_one_pair_holding_both_ends() -> None:
    pairs = [
        DirectoryPair(_checked(POSIX, "/a/from"), _checked(POSIX, "/a/to")),
        DirectoryPair(_checked(POSIX, "/b/from"), _checked(POSIX, "/b/to")),
    ]
    assert POSIX.approved_pairs(pairs, p("/a/from/x"), p("/a/to/sub/x")) == [pairs[0]]
    assert POSIX.approved_pairs(pairs, p("/a/from/x"), p("/b/to/x")) == []
    assert POSIX.approved_pairs(pairs, p("/a/to/x"), p("/a/from/x")) == []
    assert POSIX.approved_pairs(pairs, p("/a/from"), p("/a/to/x")) == []


def test_approved_dirs_strict_and_not() -> None:
    dirs = [_checked(WIN, "C:\\del"), _checked(WIN, "D:\\other")]
    assert WIN.approved_dirs(dirs, w("c:\\DEL\\x.qvd"), strict=True) == [dirs[0]]
    assert WIN.approved_dirs(dirs, w("C:\\del"), strict=True) == []
    assert WIN.approved_dirs(dirs, w("C:\\del"), strict=False) == [dirs[0]]


@pytest.mark.parametrize(
    ("raw", "display"),
    [
        ("", "C:/qvd"),
        ("sub/2020-10", "C:/qvd/sub/2020-10"),
        ("\\sub\\x", "C:/qvd/sub/x"),
        ("/sub/../other", "C:/qvd/other"),
    ],
)
def test_qvd_directory_joins_below_base(raw: str, display: str) -> None:
    base = _checked(WIN, "C:\\qvd")
    assert WIN.parse_below(base, raw, "directory", "no").display == display


@pytest.mark.parametrize(
    "raw", ["..", "..\\..\\Windows", "sub\\..\\..\\qvd2", "C:\\Windows", "\\\\srv\\share\\x", "D:x"]
)
def test_qvd_directory_escapes_are_forbidden_on_windows(raw: str) -> None:
    base = _checked(WIN, "C:\\qvd")
    with pytest.raises(Forbidden, match="QVD folder"):
        WIN.parse_below(base, raw, "directory", "Directory must be within the QVD folder")


@pytest.mark.parametrize("raw", ["..", "../qvd2", "/../../etc", "\\..\\..\\etc", "a/../../x"])
def test_qvd_directory_escapes_are_forbidden_on_posix(raw: str) -> None:
    base = _checked(POSIX, "/srv/qvd")
    with pytest.raises(Forbidden):
        POSIX.parse_below(base, raw, "directory", "refused")


@pytest.mark.parametrize("raw", [None, "x\x00", "con", "a" * 5000])
def test_qvd_directory_bad_input_is_400(raw: str | None) -> None:
    base = _checked(WIN, "C:\\qvd")
    with pytest.raises(BadRequest):
        WIN.parse_below(base, raw, "directory", "refused")


def test_config_dir_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^Butler.fileDeleteApprovedDirectories.0: .*absolute"):
        POSIX.parse_config_dir("relative/dir", "Butler.fileDeleteApprovedDirectories.0")


def test_backslashes_become_separators_on_posix_only() -> None:
    assert POSIX.native_separators("a\\b") == "a/b"
    assert WIN.native_separators("a\\b") == "a\\b"
