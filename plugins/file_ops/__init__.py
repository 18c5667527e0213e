"""File copy, move and delete between approved folders, and folder creation.

Routes and bodies are the original's (``PUT /v4/filecopy``, ``PUT /v4/filemove``,
``DELETE /v4/filedelete``, ``POST /v4/createdirqvd``, ``POST /v4/createdir``), including the
load-script forms: POST with ``X-HTTP-Method-Override``, ``"true"``/``"false"`` strings,
``/`` or ``\\`` separators. The answers are truthful where the original's were not: a
missing source is 404, an existing destination without ``overwrite`` is 409, and approval
is decided before anything about the file system is revealed. See
``docs/file-operations.md``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from butler.config import Config, ConfigError, ConfigSection, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.fields import LoadScriptBoolean, LoadScriptString
from butler.hookspecs import hookimpl
from butler.services import Services
from butler_plugins.file_ops.operations import FileOperations
from butler_plugins.file_ops.settings import (
    CREATE_DIR_KEY,
    ENABLE_KEYS,
    build_file_operations,
    config_sections,
)

TAG = "File operations"
NOT_BUILT = "File operations are not set up in this Butler instance"


class _Body(Schema):
    class Meta:
        unknown = EXCLUDE


class MoveBody(_Body):
    fromFile = LoadScriptString(allow_none=True)
    toFile = LoadScriptString(allow_none=True)
    overwrite = LoadScriptBoolean(allow_none=True)


class CopyBody(MoveBody):
    preserveTimestamp = LoadScriptBoolean(allow_none=True)


class DeleteBody(_Body):
    deleteFile = LoadScriptString(allow_none=True)


class DirectoryBody(_Body):
    directory = LoadScriptString(allow_none=True)


class Moved(Schema):
    fromFile = fields.String(required=True, metadata={"description": "Normalised source path"})
    toFile = fields.String(required=True, metadata={"description": "Normalised destination"})
    overwrite = fields.Boolean(required=True)


class Copied(Moved):
    preserveTimestamp = fields.Boolean(required=True)


class DirectoryCreated(Schema):
    directory = fields.String(required=True, metadata={"description": "As sent"})


TRANSFER_EXAMPLE = {
    "fromFile": "C:/data/qvd/subfolder/file1.qvd",
    "toFile": "C:/data/archive/file1_20200925.qvd",
    "overwrite": False,
}


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(key) for key in ENABLE_KEYS]


@hookimpl
def butler_config_sections() -> list[ConfigSection]:
    return config_sections()


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    operations = build_file_operations(config)
    _check_scopes(config, operations)
    services.register(FileOperations, operations)


def _check_scopes(config: Config, operations: FileOperations) -> None:
    """A caller's ``fileDirectories`` must lie inside the approved folders: a scope
    elsewhere would look like a grant while approving nothing."""
    auth = config.get("restServerConfig.auth") or {}
    if auth.get("enable") is not True:
        return
    for kind in ("apiKeys", "clientCertificates"):
        for index, entry in enumerate(auth.get(kind) or []):
            for n, directory in enumerate(entry.get("fileDirectories") or []):
                key = f"Butler.restServerConfig.auth.{kind}.{index}.fileDirectories.{n}"
                try:
                    fits = operations.scope_fits(directory)
                except ValueError as exc:
                    raise ConfigError(f"{key}: {exc}") from None
                if not fits:
                    raise ConfigError(f"{key}: {directory} is inside no approved directory")


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def ops(call: ApiRequest, **paths: Any) -> FileOperations:
        """The operations this caller may run, its paths noted for the audit record."""
        call.audit.resources["paths"] = paths
        operations = services.require(FileOperations, NOT_BUILT)
        return operations.within(call.caller.file_directories)

    def copy(call: ApiRequest) -> Any:
        body = call.body
        overwrite = bool(body.get("overwrite"))
        preserve = bool(body.get("preserveTimestamp"))
        source, target = ops(call, fromFile=body.get("fromFile"), toFile=body.get("toFile")).copy(
            call.caller.name,
            body.get("fromFile"),
            body.get("toFile"),
            overwrite=overwrite,
            preserve_timestamp=preserve,
        )
        echo = {
            "fromFile": source,
            "toFile": target,
            "overwrite": overwrite,
            "preserveTimestamp": preserve,
        }
        return echo, 201

    def move(call: ApiRequest) -> Any:
        body = call.body
        overwrite = bool(body.get("overwrite"))
        source, target = ops(call, fromFile=body.get("fromFile"), toFile=body.get("toFile")).move(
            call.caller.name, body.get("fromFile"), body.get("toFile"), overwrite=overwrite
        )
        return {"fromFile": source, "toFile": target, "overwrite": overwrite}, 201

    def delete(call: ApiRequest) -> Any:
        ops(call, deleteFile=call.body.get("deleteFile")).delete(
            call.caller.name, call.body.get("deleteFile")
        )
        return "", 204

    def create_qvd_dir(call: ApiRequest) -> Any:
        ops(call, directory=call.body.get("directory")).create_qvd_dir(
            call.caller.name, call.body.get("directory")
        )
        return {"directory": call.body["directory"]}, 201

    def create_dir(call: ApiRequest) -> Any:
        ops(call, directory=call.body.get("directory")).create_dir(
            call.caller.name, call.body.get("directory")
        )
        return {"directory": call.body["directory"]}, 201

    transfer_errors = {
        400: "Missing or invalid path (relative, UNC on non-Windows, NUL, too long...)",
        403: "The source and destination are not inside one approved folder pair",
        404: "fromFile does not exist",
        409: "toFile exists and overwrite is false",
        500: "The operating system refused the operation",
    }
    return [
        Endpoint(
            enable_key="fileCopy",
            method="PUT",
            rule="/v4/filecopy",
            view=copy,
            summary="Copy file(s) between well defined, approved locations.",
            description=(
                "Copies a file, or a folder with everything below it, when one entry of "
                "`Butler.fileCopyApprovedDirectories` has the source below its "
                "`fromDirectory` and the destination below its `toDirectory`. Paths must "
                "be absolute. Missing destination folders are created. With `overwrite` "
                "false an existing destination is refused with 409."
            ),
            tag=TAG,
            body_schema=CopyBody,
            waits=True,
            body_example={**TRANSFER_EXAMPLE, "preserveTimestamp": False},
            responses={
                201: Reply(
                    "Copied; the normalised paths are echoed",
                    Copied,
                    example={**TRANSFER_EXAMPLE, "preserveTimestamp": True},
                ),
                **transfer_errors,
            },
        ),
        Endpoint(
            enable_key="fileMove",
            method="PUT",
            rule="/v4/filemove",
            view=move,
            summary="Move file(s) between well defined, approved locations.",
            description=(
                "Moves a file or a folder when one entry of "
                "`Butler.fileMoveApprovedDirectories` approves both ends (see file copy)."
            ),
            tag=TAG,
            body_schema=MoveBody,
            waits=True,
            body_example=TRANSFER_EXAMPLE,
            responses={
                201: Reply(
                    "Moved; the normalised paths are echoed", Moved, example=TRANSFER_EXAMPLE
                ),
                **transfer_errors,
            },
        ),
        Endpoint(
            enable_key="fileDelete",
            method="DELETE",
            rule="/v4/filedelete",
            view=delete,
            summary="Delete file(s) in well defined, approved locations.",
            description=(
                "Deletes a file, a link, or a folder with everything below it, when it lies "
                "below one of `Butler.fileDeleteApprovedDirectories` (an approved folder "
                "itself cannot be deleted). The path goes in the JSON body, also on DELETE."
            ),
            tag=TAG,
            body_schema=DeleteBody,
            body_example={"deleteFile": "C:/data/qvdstore/sales/file1.qvd"},
            responses={
                204: "Deleted",
                400: "Missing or invalid path",
                403: "Not below an approved folder",
                404: "Delete failed, file does not exist",
                500: "The operating system refused the operation",
            },
        ),
        Endpoint(
            enable_key="createDirQVD",
            method="POST",
            rule="/v4/createdirqvd",
            view=create_qvd_dir,
            summary="Creates a directory in designated QVD directory.",
            description=(
                "Creates `directory` (and missing parents) below "
                "`Butler.configDirectories.qvdPath`; an existing folder is fine."
            ),
            tag=TAG,
            body_schema=DirectoryBody,
            body_example={"directory": "subfolder/2020-10"},
            responses={
                201: Reply(
                    "Created (or already there); `directory` is echoed as sent",
                    DirectoryCreated,
                    example={"directory": "subfolder/2020-10"},
                ),
                400: "Missing or invalid directory",
                403: "Directory must be within the QVD folder",
                409: "A file with that name exists",
                503: "configDirectories.qvdPath is not configured",
            },
        ),
        Endpoint(
            enable_key="createDir",
            method="POST",
            rule="/v4/createdir",
            view=create_dir,
            summary="Creates a directory anywhere in the file system.",
            description=(
                "Creates the absolute `directory` (and missing parents); an existing folder "
                f"is fine. When `Butler.{CREATE_DIR_KEY}` is set, the folder must be inside "
                "one of those folders."
            ),
            tag=TAG,
            body_schema=DirectoryBody,
            body_example={"directory": "C:/data/qvds/2020"},
            responses={
                201: Reply(
                    "Created (or already there); `directory` is echoed as sent",
                    DirectoryCreated,
                    example={"directory": "C:/data/qvds/2020"},
                ),
                400: "Missing, relative or invalid directory",
                403: f"Not inside Butler.{CREATE_DIR_KEY}",
                409: "A file with that name exists",
            },
        ),
    ]
