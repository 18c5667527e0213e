"""Engine fixtures for this folder (defined in tests/fixtures/engine.py)."""

from tests.fixtures.engine import engine_certs, engine_client, engine_simulator

__all__ = ["engine_certs", "engine_client", "engine_simulator"]
