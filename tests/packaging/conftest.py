"""Fixtures of the packaging tests: a local HTTP receiver stands in for Butler's /health."""

from tests.fixtures.http_receiver import http_receiver

__all__ = ["http_receiver"]
