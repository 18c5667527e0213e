"""Shared helpers for the QRS tests: a bare HTTPS client for the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from butler.testing.certs import CertPaths
from butler.testing.qrs_simulator import QrsSimulator

KEY = "0123456789abcdef"


class Qrs:
    """A bare requests session with the client certificate: exercises the simulator only."""

    def __init__(self, sim: QrsSimulator, certs: CertPaths | None, cert: bool = True):
        self.base = sim.url
        self.session = requests.Session()
        self.session.trust_env = False
        if certs is not None:
            self.session.verify = str(certs.ca)
            if cert:
                self.session.cert = (str(certs.client_cert), str(certs.client_key))

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        xrfkey: str | None = KEY,
        header_key: str | None = KEY,
        timeout: float = 5.0,
    ) -> requests.Response:
        query = dict(params or {})
        if xrfkey is not None:
            query["xrfkey"] = xrfkey
        headers = {"X-Qlik-Xrfkey": header_key} if header_key is not None else {}
        return self.session.request(
            method,
            self.base + path,
            params=query,
            headers=headers,
            json=body,
            timeout=timeout,
        )

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def qrs(qrs_simulator: QrsSimulator, qrs_certs: CertPaths) -> Iterator[Qrs]:
    client = Qrs(qrs_simulator, qrs_certs)
    yield client
    client.close()
