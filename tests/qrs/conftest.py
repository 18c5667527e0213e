"""QRS fixtures for this folder until the shared conftest imports them."""

from tests.fixtures.qrs import qrs_certs, qrs_client, qrs_simulator

__all__ = ["qrs_certs", "qrs_client", "qrs_simulator"]
