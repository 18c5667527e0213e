"""Load the certificate files a config names, once, before anything listens or connects.

``run`` and ``check-config`` both call this, so a config that ``check-config`` accepts has
certificates that load: a placeholder path from the original's template, a key that does
not belong to its certificate or a file that is not PEM is a config error naming the key
path, not a failure at the first QRS call or a port that never opens.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from butler.config import Config, ConfigError


@dataclass(frozen=True)
class CertificateSetting:
    """One certificate file as the config names it: the key path and the resolved file."""

    key: str
    path: Path


def load_pair(
    cert: CertificateSetting, key: CertificateSetting, ca: CertificateSetting | None
) -> None:
    """Load ``cert`` with ``key`` (they must match) and ``ca``; ``ConfigError`` naming the key."""
    for setting in (cert, key, ca):
        if setting is not None and not setting.path.is_file():
            raise ConfigError(f"Butler.{setting.key}: file not found: {setting.path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(certfile=str(cert.path), keyfile=str(key.path))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"Butler.{cert.key} / Butler.{key.key}: certificate and key do not load as a pair "
            f"({cert.path}, {key.path}): {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"Butler.{cert.key}: {cert.path}: {exc.strerror or exc}") from None
    if ca is None:
        return
    try:
        context.load_verify_locations(cafile=str(ca.path))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"Butler.{ca.key}: not a PEM CA certificate ({ca.path}): {reason}"
        ) from None


def _setting(config: Config, key: str) -> CertificateSetting | None:
    value = config.get(key)
    return CertificateSetting(key, config.resolve_path(value)) if value else None


def load_client_certificate(config: Config, section: str) -> None:
    """``Butler.cert`` as ``section`` (``configQRS``, ``configEngine``) uses it.

    The CA is loaded only where the section verifies the server with it, as the clients do.
    """
    cert = _setting(config, "cert.clientCert")
    key = _setting(config, "cert.clientCertKey")
    if cert is None or key is None:
        raise ConfigError(
            f"Butler.cert (used by Butler.{section}): clientCert and clientCertKey must both be set"
        )
    verifies = config.get(f"{section}.rejectUnauthorized") is True
    load_pair(cert, key, _setting(config, "cert.clientCertCA") if verifies else None)


def load_server_certificate(config: Config) -> None:
    """``Butler.restServerConfig.tls``: the certificate the REST API serves HTTPS with."""
    cert = _setting(config, "restServerConfig.tls.cert")
    key = _setting(config, "restServerConfig.tls.key")
    if cert is None or key is None:
        raise ConfigError(
            "Butler.restServerConfig.tls: cert and key must both be set when tls.enable is true"
        )
    load_pair(cert, key, _setting(config, "restServerConfig.tls.ca"))
