"""A started Butler with the audit trail on, its records in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from butler.services import Services
from tests.conftest import deep_merge
from tests.fixtures.mqtt import mosquitto, mosquitto_factory
from tests.fixtures.qrs import butler_qrs_config

__all__ = ["mosquitto", "mosquitto_factory"]

AuditButler = Callable[..., tuple[str, Services]]


@pytest.fixture
def audit_butler(started_butler, qrs_simulator, qrs_certs, tmp_path) -> AuditButler:
    """Factory: ``(base URL, services)`` of a started Butler with ``GET /v4/audit`` and a
    task-start route; ``extra`` is merged into the config."""

    def start(extra: dict[str, Any] | None = None) -> tuple[str, Services]:
        base = {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {"senseStartTask": True, "audit": True},
            "keyValueStore": {"persistence": "memory"},
            "runs": {"dbFile": str(tmp_path / "runs.sqlite")},
            "audit": {"enable": True, "dbFile": str(tmp_path / "audit.sqlite")},
        }
        return started_butler(deep_merge(base, extra or {}))

    return start
