"""The five file endpoints over HTTP, in every form butler_subs.qvs sends (SPEC 12)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from butler.config import ConfigError, load_config
from butler_plugins.file_ops.operations import FileOperations
from butler_plugins.file_ops.settings import build_file_operations
from tests.fileops.conftest import Sandbox, build_tree, sandbox_config
from tests.fixtures.original_config import filled_template, write_config


def test_copyfile_sub_form(sandbox: Sandbox) -> None:
    body = {
        "fromFile": "$F/a.qvd",
        "toFile": "$T/archive/2020/a_copy.qvd",
        "overwrite": "false",
        "preserveTimestamp": "true",
    }
    response = sandbox.call("POST", "/v4/filecopy", body, override="PUT")
    assert response.status_code == 201
    assert response.headers["Content-Type"].startswith("application/json")
    names = sandbox.names
    assert response.json() == {
        "fromFile": f"{names['F']}/a.qvd",
        "toFile": f"{names['T']}/archive/2020/a_copy.qvd",
        "overwrite": False,
        "preserveTimestamp": True,
    }
    source = sandbox.root / "approved" / "from" / "a.qvd"
    copied = sandbox.root / "approved" / "to" / "archive" / "2020" / "a_copy.qvd"
    assert copied.read_text() == "A"
    assert copied.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert source.read_text() == "A"


def test_copy_with_put_and_json_booleans(sandbox: Sandbox) -> None:
    response = sandbox.call(
        "PUT",
        "/v4/filecopy",
        {"fromFile": "$F/a.qvd", "toFile": "$T/existing.qvd", "overwrite": True},
    )
    assert response.status_code == 201
    assert response.json()["overwrite"] is True
    assert response.json()["preserveTimestamp"] is False
    assert (sandbox.root / "approved" / "to" / "existing.qvd").read_text() == "A"


def test_copy_without_preserve_gets_a_new_timestamp(sandbox: Sandbox) -> None:
    source = sandbox.root / "approved" / "from" / "a.qvd"
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))
    response = sandbox.call("PUT", "/v4/filecopy", {"fromFile": "$F/a.qvd", "toFile": "$T/n.qvd"})
    assert response.status_code == 201
    assert (sandbox.root / "approved" / "to" / "n.qvd").stat().st_mtime_ns != 1_000_000_000


def test_copy_normalises_and_echoes_forward_slashes(sandbox: Sandbox) -> None:
    names = sandbox.names
    body = {"fromFile": "$F\\sub\\..\\a.qvd", "toFile": "$T//x/./y.qvd", "overwrite": "True"}
    response = sandbox.call("PUT", "/v4/filecopy", body)
    assert response.status_code == 201
    assert response.json()["fromFile"] == f"{names['F']}/a.qvd"
    assert response.json()["toFile"] == f"{names['T']}/x/y.qvd"
    assert response.json()["overwrite"] is True


def test_copy_onto_existing_without_overwrite_is_409_and_keeps_the_file(sandbox: Sandbox) -> None:
    response = sandbox.call(
        "PUT", "/v4/filecopy", {"fromFile": "$F/a.qvd", "toFile": "$T/existing.qvd"}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"
    assert (sandbox.root / "approved" / "to" / "existing.qvd").read_text() == "OLD"


def test_copy_missing_source_is_404(sandbox: Sandbox) -> None:
    response = sandbox.call("PUT", "/v4/filecopy", {"fromFile": "$F/nope.qvd", "toFile": "$T/x"})
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "fromFile does not exist",
    }


def test_copy_directory_recursively(sandbox: Sandbox) -> None:
    response = sandbox.call("PUT", "/v4/filecopy", {"fromFile": "$F/sub", "toFile": "$T/sub"})
    assert response.status_code == 201
    assert (sandbox.root / "approved" / "to" / "sub" / "b.qvd").read_text() == "B"
    leftovers = [
        p.name for p in (sandbox.root / "approved" / "to").iterdir() if ".butler-" in p.name
    ]
    assert leftovers == []


def test_copy_directory_onto_existing_merges_with_overwrite(sandbox: Sandbox) -> None:
    target = sandbox.root / "approved" / "to" / "sub"
    target.mkdir()
    (target / "keep.qvd").write_text("KEEP")
    (target / "b.qvd").write_text("OLD")
    body = {"fromFile": "$F/sub", "toFile": "$T/sub"}
    assert sandbox.call("PUT", "/v4/filecopy", body).status_code == 409
    assert sandbox.call("PUT", "/v4/filecopy", {**body, "overwrite": "true"}).status_code == 201
    assert (target / "b.qvd").read_text() == "B"
    assert (target / "keep.qvd").read_text() == "KEEP"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"toFile": "$T/x"}, "Required parameter missing"),
        ({"fromFile": "", "toFile": "$T/x"}, "Required parameter missing"),
        ({"fromFile": "$F/a.qvd", "toFile": None}, "Required parameter missing"),
        ({"fromFile": "$F/a.qvd", "toFile": "x.qvd"}, "toFile must be an absolute path"),
    ],
)
def test_copy_bad_parameters_are_400(sandbox: Sandbox, body: dict[str, Any], message: str) -> None:
    response = sandbox.call("PUT", "/v4/filecopy", body)
    assert response.status_code == 400
    assert response.json()["message"] == message


def test_copy_non_boolean_overwrite_is_validation_400(sandbox: Sandbox) -> None:
    body = {"fromFile": "$F/a.qvd", "toFile": "$T/x", "overwrite": "yes"}
    response = sandbox.call("PUT", "/v4/filecopy", body)
    assert response.status_code == 400
    assert response.json()["code"] == "FST_ERR_VALIDATION"
    assert not (sandbox.root / "approved" / "to" / "x").exists()


def test_copy_unknown_fields_are_ignored(sandbox: Sandbox) -> None:
    body = {"fromFile": "$F/a.qvd", "toFile": "$T/u.qvd", "comment": "from a load script"}
    assert sandbox.call("PUT", "/v4/filecopy", body).status_code == 201


def test_copy_into_itself_is_400(sandbox: Sandbox) -> None:
    response = sandbox.call(
        "PUT", "/v4/filecopy", {"fromFile": "$F/sub", "toFile": "$F/sub/deeper"}
    )
    assert response.status_code in (400, 403)
    assert not (sandbox.root / "approved" / "from" / "sub" / "deeper").exists()


def test_movefile_sub_form(sandbox: Sandbox) -> None:
    body = {"fromFile": "$F/a.qvd", "toFile": "$T/moved/a.qvd", "overwrite": "false"}
    response = sandbox.call("POST", "/v4/filemove", body, override="PUT")
    assert response.status_code == 201
    names = sandbox.names
    assert response.json() == {
        "fromFile": f"{names['F']}/a.qvd",
        "toFile": f"{names['T']}/moved/a.qvd",
        "overwrite": False,
    }
    assert not (sandbox.root / "approved" / "from" / "a.qvd").exists()
    assert (sandbox.root / "approved" / "to" / "moved" / "a.qvd").read_text() == "A"


def test_move_onto_existing(sandbox: Sandbox) -> None:
    body = {"fromFile": "$F/a.qvd", "toFile": "$T/existing.qvd"}
    response = sandbox.call("PUT", "/v4/filemove", body)
    assert response.status_code == 409
    assert (sandbox.root / "approved" / "from" / "a.qvd").exists()
    assert (sandbox.root / "approved" / "to" / "existing.qvd").read_text() == "OLD"
    response = sandbox.call("PUT", "/v4/filemove", {**body, "overwrite": "true"})
    assert response.status_code == 201
    assert not (sandbox.root / "approved" / "from" / "a.qvd").exists()
    assert (sandbox.root / "approved" / "to" / "existing.qvd").read_text() == "A"


def test_move_directory_and_replace_existing_directory(sandbox: Sandbox) -> None:
    target = sandbox.root / "approved" / "to" / "sub"
    target.mkdir()
    (target / "stale.qvd").write_text("STALE")
    body = {"fromFile": "$F/sub", "toFile": "$T/sub", "overwrite": True}
    response = sandbox.call("PUT", "/v4/filemove", body)
    assert response.status_code == 201
    assert sorted(p.name for p in target.iterdir()) == ["b.qvd"]
    assert not (sandbox.root / "approved" / "from" / "sub").exists()


def test_move_missing_source_is_404(sandbox: Sandbox) -> None:
    response = sandbox.call("PUT", "/v4/filemove", {"fromFile": "$F/none", "toFile": "$T/x"})
    assert response.status_code == 404


def test_deletefile_sub_form(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v4/filedelete", {"deleteFile": "$D/x.qvd"}, override="DELETE")
    assert response.status_code == 204
    assert response.content == b""
    assert not (sandbox.root / "approved" / "del" / "x.qvd").exists()


def test_delete_with_body_on_delete_and_backslashes(sandbox: Sandbox) -> None:
    response = sandbox.call("DELETE", "/v4/filedelete", {"deleteFile": "$D\\x.qvd"})
    assert response.status_code == 204
    assert not (sandbox.root / "approved" / "del" / "x.qvd").exists()


def test_delete_directory_recursively(sandbox: Sandbox) -> None:
    response = sandbox.call("DELETE", "/v4/filedelete", {"deleteFile": "$D/sub"})
    assert response.status_code == 204
    assert not (sandbox.root / "approved" / "del" / "sub").exists()
    assert (sandbox.root / "approved" / "del").is_dir()


def test_delete_missing_is_404_and_missing_body_is_400(sandbox: Sandbox) -> None:
    response = sandbox.call("DELETE", "/v4/filedelete", {"deleteFile": "$D/none.qvd"})
    assert response.status_code == 404
    assert response.json()["message"] == "Delete failed, file does not exist"
    response = sandbox.call("POST", "/v4/filedelete", override="DELETE")
    assert response.status_code == 400
    assert response.json()["message"] == "Required parameter missing"


def test_createdir_sub_form(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v4/createdir", {"directory": "$M/2020/10"})
    assert response.status_code == 201
    assert response.json() == {"directory": f"{sandbox.names['M']}/2020/10"}
    assert (sandbox.root / "approved" / "mk" / "2020" / "10").is_dir()
    again = sandbox.call("POST", "/v4/createdir", {"directory": "$M/2020/10"})
    assert again.status_code == 201


def test_createdir_echoes_the_directory_as_sent(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v4/createdir", {"directory": "$M\\a\\..\\b"})
    assert response.status_code == 201
    assert response.json() == {"directory": f"{sandbox.names['M']}\\a\\..\\b"}
    assert (sandbox.root / "approved" / "mk" / "b").is_dir()


def test_createdir_over_a_file_is_409(sandbox: Sandbox) -> None:
    (sandbox.root / "approved" / "mk" / "taken").write_text("file")
    response = sandbox.call("POST", "/v4/createdir", {"directory": "$M/taken"})
    assert response.status_code == 409


def test_createdirqvd_sub_form(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v4/createdirqvd", {"directory": "subfolder/2020-10"})
    assert response.status_code == 201
    assert response.json() == {"directory": "subfolder/2020-10"}
    assert (sandbox.root / "approved" / "qvd" / "subfolder" / "2020-10").is_dir()


@pytest.mark.parametrize("directory", ["", "/lead/slash", "\\back\\slash", 2020])
def test_createdirqvd_variants(sandbox: Sandbox, directory: Any) -> None:
    response = sandbox.call("POST", "/v4/createdirqvd", {"directory": directory})
    assert response.status_code == 201
    expected = str(directory).replace("\\", "/").strip("/")
    assert (sandbox.root / "approved" / "qvd" / expected).is_dir()


def test_createdirqvd_missing_directory_is_400(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v4/createdirqvd", {})
    assert response.status_code == 400
    assert response.json()["message"] == "Required parameter missing"


def test_disabled_endpoints_are_404(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    live_server: Callable[..., str],
) -> None:
    settings = sandbox_config(tmp_path)
    settings["restServerEndpointsEnable"] = {"fileCopy": True}
    url = live_server(make_app(make_config(settings)))
    for method, route in [
        ("PUT", "/v4/filemove"),
        ("DELETE", "/v4/filedelete"),
        ("POST", "/v4/createdir"),
        ("POST", "/v4/createdirqvd"),
    ]:
        response = requests.request(method, f"{url}{route}", json={}, timeout=5)
        assert response.status_code == 404, route


def test_no_approvals_refuse_everything(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    live_server: Callable[..., str],
) -> None:
    build_tree(tmp_path / "s")
    settings = sandbox_config(tmp_path / "s")
    settings["fileCopyApprovedDirectories"] = None
    settings["fileDeleteApprovedDirectories"] = None
    del settings["configDirectories"]
    url = live_server(make_app(make_config(settings)))
    approved = tmp_path / "s" / "approved"
    body = {"fromFile": str(approved / "from" / "a.qvd"), "toFile": str(approved / "to" / "n")}
    response = requests.put(f"{url}/v4/filecopy", json=body, timeout=5)
    assert response.status_code == 403
    assert response.json()["message"] == "No approved fromDir/toDir for file copy"
    response = requests.delete(
        f"{url}/v4/filedelete", json={"deleteFile": str(approved / "del" / "x.qvd")}, timeout=5
    )
    assert response.status_code == 403
    assert (approved / "del" / "x.qvd").exists()
    response = requests.post(f"{url}/v4/createdirqvd", json={"directory": "x"}, timeout=5)
    assert response.status_code == 503
    assert "configDirectories.qvdPath" in response.json()["message"]


def test_relative_config_dirs_resolve_against_the_config_folder(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    live_server: Callable[..., str],
) -> None:
    (tmp_path / "qvd").mkdir()
    (tmp_path / "del").mkdir()
    (tmp_path / "del" / "old.qvd").write_text("x")
    settings = {
        "restServerEndpointsEnable": {"createDirQVD": True, "fileDelete": True},
        "configDirectories": {"qvdPath": "qvd"},
        "fileDeleteApprovedDirectories": ["del"],
    }
    url = live_server(make_app(make_config(settings)))
    response = requests.post(f"{url}/v4/createdirqvd", json={"directory": "new"}, timeout=5)
    assert response.status_code == 201
    assert (tmp_path / "qvd" / "new").is_dir()
    body = {"deleteFile": str(tmp_path / "del" / "old.qvd")}
    assert requests.delete(f"{url}/v4/filedelete", json=body, timeout=5).status_code == 204


def test_unrestricted_createdir_warns_at_start_up(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    live_server: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {"restServerEndpointsEnable": {"createDir": True}}
    with caplog.at_level(logging.WARNING):
        app = make_app(make_config(settings))
    assert any("createDirApprovedDirectories" in r.getMessage() for r in caplog.records)
    url = live_server(app)
    target = tmp_path / "anywhere" / "deep"
    response = requests.post(f"{url}/v4/createdir", json={"directory": str(target)}, timeout=5)
    assert response.status_code == 201
    assert target.is_dir()


def test_restricted_createdir_does_not_warn(
    tmp_path: Path,
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {
        "restServerEndpointsEnable": {"createDir": True},
        "createDirApprovedDirectories": [str(tmp_path)],
    }
    with caplog.at_level(logging.WARNING):
        make_app(make_config(settings))
    assert not any("createDirApprovedDirectories" in r.getMessage() for r in caplog.records)


def test_every_call_writes_one_audit_line(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="butler.audit"):
        sandbox.call("PUT", "/v4/filecopy", {"fromFile": "$F/a.qvd", "toFile": "$T/audit.qvd"})
        sandbox.call("DELETE", "/v4/filedelete", {"deleteFile": "$O/secret.qvd"})
    lines = [r for r in caplog.records if r.name == "butler.audit"]
    assert len(lines) == 2
    copy_line, delete_line = (r.getMessage() for r in lines)
    assert copy_line.startswith("client=127.0.0.1 op=copy ")
    assert "audit.qvd" in copy_line and copy_line.endswith("outcome=ok")
    assert "op=delete" in delete_line and "outcome=403" in delete_line
    assert lines[1].levelno == logging.WARNING


def test_the_original_template_config_builds(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, filled_template()))
    ops = build_file_operations(config)
    assert isinstance(ops, FileOperations)


def test_a_bad_approved_folder_stops_start_up_naming_the_key(
    make_config: Callable[..., Any],
    make_app: Callable[..., Any],
) -> None:
    settings = {
        "restServerEndpointsEnable": {"fileDelete": True},
        "fileDeleteApprovedDirectories": ["/ok", "//server/share"],
    }
    with pytest.raises(ConfigError, match=r"^Butler\.fileDeleteApprovedDirectories\.1: UNC"):
        make_app(make_config(settings))


def test_settings_of_disabled_endpoints_are_not_read(
    make_config: Callable[..., Any], make_app: Callable[..., Any]
) -> None:
    settings = {"fileDeleteApprovedDirectories": ["//server/share"]}
    assert make_app(make_config(settings)) is not None


@pytest.mark.parametrize("route", ["/v4/createdirqvd", "/v4/createdir"])
@pytest.mark.parametrize("value", [False, True])
def test_a_boolean_directory_is_refused_not_created(
    sandbox: Sandbox, route: str, value: bool
) -> None:
    response = sandbox.call("POST", route, {"directory": value})
    assert response.status_code == 400
    assert response.json()["message"] == "body/directory must be string"
    qvd = sandbox.root / "approved" / "qvd"
    assert not (qvd / "false").exists() and not (qvd / "true").exists()
