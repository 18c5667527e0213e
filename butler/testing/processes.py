"""Helpers for tests and benchmarks that run Butler (or a peer) as a real process."""

from __future__ import annotations

import socket
import subprocess
import time

import requests


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    url: str,
    process: subprocess.Popen[str] | subprocess.Popen[bytes],
    timeout: float = 20,
    verify: str | bool = True,
) -> requests.Response:
    """Poll ``url`` until it answers; ``RuntimeError`` if the process exits or time runs out.

    ``verify``: the CA file an HTTPS ``url`` is checked with (a test CA).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=1, verify=verify)
        except requests.ConnectionError:
            if process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.05)
