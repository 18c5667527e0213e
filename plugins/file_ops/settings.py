"""The file plugin's config: approved folder pairs and folders, read once at start-up.

Only enabled endpoints' settings are read, so a stale section for a switched-off feature
cannot stop start-up; every approved folder is checked (absolute, no odd syntax) and a bad
entry stops start-up with its key path.
"""

from __future__ import annotations

import logging

from butler.config import Config, ConfigError, ConfigSection, when_enabled
from butler.config_schema import OpenSchema, config_string
from butler_plugins.file_ops.operations import FileOperations
from butler_plugins.file_ops.policy import CheckedPath, DirectoryPair, PathPolicy

log = logging.getLogger(__name__)

CREATE_DIR_KEY = "createDirApprovedDirectories"
ENABLE_KEYS = ("createDir", "createDirQVD", "fileDelete", "fileMove", "fileCopy")


class DirectoryPairSection(OpenSchema):
    fromDirectory = config_string(required=True)
    toDirectory = config_string(required=True)


class DirectoriesSection(OpenSchema):
    """``configDirectories``: declared so that the core's checks (a template placeholder
    as ``qvdPath`` is an error) cover it while ``createDirQVD`` is on."""

    qvdPath = config_string(allow_none=True, load_default=None)


def config_sections() -> list[ConfigSection]:
    return [
        ConfigSection(
            "fileCopyApprovedDirectories",
            DirectoryPairSection,
            when_enabled("fileCopy"),
            many=True,
        ),
        ConfigSection(
            "fileMoveApprovedDirectories",
            DirectoryPairSection,
            when_enabled("fileMove"),
            many=True,
        ),
        ConfigSection(
            "fileDeleteApprovedDirectories", None, when_enabled("fileDelete"), string_list=True
        ),
        ConfigSection(CREATE_DIR_KEY, None, when_enabled("createDir"), string_list=True),
        ConfigSection("configDirectories", DirectoriesSection, when_enabled("createDirQVD")),
    ]


def build_file_operations(config: Config, policy: PathPolicy | None = None) -> FileOperations:
    """Read the approvals of the enabled file endpoints; ``ConfigError`` on a bad entry.

    Only enabled endpoints' settings are read, so a stale section for a switched-off
    feature cannot stop start-up.
    """
    policy = policy or PathPolicy()

    def directory(raw: str, key: str) -> CheckedPath:
        resolved = config.resolve_path(policy.native_separators(raw))
        try:
            return policy.parse_config_dir(str(resolved), f"Butler.{key}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def pairs(key: str) -> list[DirectoryPair]:
        return [
            DirectoryPair(
                directory(entry["fromDirectory"], f"{key}.{i}.fromDirectory"),
                directory(entry["toDirectory"], f"{key}.{i}.toDirectory"),
            )
            for i, entry in enumerate(config.get(key) or [])
        ]

    def directories(key: str) -> list[CheckedPath]:
        return [directory(raw, f"{key}.{i}") for i, raw in enumerate(config.get(key) or [])]

    qvd_path = config.get("configDirectories.qvdPath")
    create_dirs = None
    if config.endpoint_enabled("createDir"):
        if config.get(CREATE_DIR_KEY) is None:
            log.warning(
                "POST /v4/createdir is enabled without Butler.%s: callers can create "
                "folders anywhere this process may write",
                CREATE_DIR_KEY,
            )
        else:
            create_dirs = directories(CREATE_DIR_KEY)
    return FileOperations(
        policy=policy,
        copy_pairs=pairs("fileCopyApprovedDirectories")
        if config.endpoint_enabled("fileCopy")
        else [],
        move_pairs=pairs("fileMoveApprovedDirectories")
        if config.endpoint_enabled("fileMove")
        else [],
        delete_dirs=(
            directories("fileDeleteApprovedDirectories")
            if config.endpoint_enabled("fileDelete")
            else []
        ),
        qvd_dir=(
            directory(qvd_path, "configDirectories.qvdPath")
            if qvd_path and config.endpoint_enabled("createDirQVD")
            else None
        ),
        create_dirs=create_dirs,
    )
