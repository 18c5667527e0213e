"""Settling who is calling: API keys, client certificates, and the failed-attempt limit.

Built once from ``restServerConfig.auth``. A request names its caller with ``X-Api-Key`` or
``Authorization: Bearer`` (never the query string, which lands in proxies' logs), or with a
client certificate the TLS server verified against ``restServerConfig.tls.ca``. A key that
was presented and is wrong is a failure even when a certificate would do: a caller never
silently becomes someone else. The presented key is never logged or echoed.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from butler.auth.callers import Caller, TaskScope, unknown_scopes
from butler.auth.keys import KeyHash, KeyVerifier
from butler.client_cert import CLIENT_SUBJECT_KEY, ClientSubject, client_subjects_supported
from butler.config import ConfigError
from butler.errors import TooManyRequests, Unauthorized

if TYPE_CHECKING:
    from butler.config import Config

log = logging.getLogger("butler.auth")

_MAX_TRACKED_ADDRESSES = 10_000
"""Addresses remembered for the failed-attempt limit; stale minutes are dropped first."""


class AuthConfigError(ValueError):
    """An auth setting that cannot work; the message names the key, never a secret."""


@dataclass(frozen=True)
class _Failures:
    minute: int
    count: int


class FailedAttempts:
    """Failures per client address in the current minute (fixed windows)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time):
        self._limit = per_minute
        self._clock = clock
        self._seen: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        entry = self._seen.get(address)
        return entry is not None and entry.minute == self._minute() and entry.count >= self._limit

    def add(self, address: str) -> None:
        minute = self._minute()
        with self._lock:
            entry = self._seen.get(address)
            count = entry.count + 1 if entry is not None and entry.minute == minute else 1
            self._seen[address] = _Failures(minute, count)
            if len(self._seen) > _MAX_TRACKED_ADDRESSES:
                self._seen = {a: f for a, f in self._seen.items() if f.minute == minute}

    def seconds_left(self) -> int:
        return 60 - int(self._clock()) % 60

    def _minute(self) -> int:
        return int(self._clock()) // 60


class Authenticator:
    """Turns a request's credentials into a :class:`Caller`, or refuses it."""

    def __init__(
        self,
        *,
        verifier: KeyVerifier,
        key_callers: Mapping[str, Caller],
        cert_callers: Mapping[str, Caller],
        anonymous: Iterable[str],
        failures: FailedAttempts,
    ):
        self._verifier = verifier
        self._key_callers = dict(key_callers)
        self._cert_callers = {_normal_subject(s): c for s, c in cert_callers.items()}
        self.anonymous = frozenset(anonymous)
        """Enable keys whose routes answer without a credential (``butlerping``, ``health``)."""
        self._failures = failures

    @classmethod
    def from_config(
        cls, auth: Mapping[str, Any], enable_keys: Iterable[str]
    ) -> tuple[Authenticator, list[str]]:
        """The authenticator for ``restServerConfig.auth``, and start-up warnings."""
        keys = list(enable_keys)
        warnings: list[str] = []
        entries: list[tuple[str, KeyHash | None, str | None]] = []
        key_callers: dict[str, Caller] = {}
        for index, item in enumerate(auth.get("apiKeys") or []):
            where = f"Butler.restServerConfig.auth.apiKeys.{index}"
            name = item["name"]
            if name in key_callers:
                raise AuthConfigError(f"{where}.name: '{name}' is used by two keys")
            key_hash = None
            if item.get("keyHash") is not None:
                try:
                    key_hash = KeyHash.parse(item["keyHash"])
                except ValueError as exc:
                    raise AuthConfigError(f"{where}.keyHash: {exc}") from None
            else:
                warnings.append(
                    f"{where} ('{name}') holds a plain key: anyone who reads the config file "
                    "can use it; replace it with the keyHash printed by butler new-api-key"
                )
            entries.append((name, key_hash, item.get("key")))
            key_callers[name] = _caller(name, "apiKey", item, keys, where)
        cert_callers: dict[str, Caller] = {}
        for index, item in enumerate(auth.get("clientCertificates") or []):
            where = f"Butler.restServerConfig.auth.clientCertificates.{index}"
            name = item.get("name") or item["subject"]
            cert_callers[item["subject"]] = _caller(name, "certificate", item, keys, where)
        anonymous = list(auth.get("anonymous") or [])
        for index, key in enumerate(anonymous):
            if key not in keys:
                raise AuthConfigError(
                    f"Butler.restServerConfig.auth.anonymous.{index}: '{key}' is no enable key"
                )
        return (
            cls(
                verifier=KeyVerifier(entries),
                key_callers=key_callers,
                cert_callers=cert_callers,
                anonymous=anonymous,
                failures=FailedAttempts(auth["failedAttemptsPerMinute"]),
            ),
            warnings,
        )

    def identify(self, environ: Mapping[str, Any], headers: Mapping[str, str]) -> Caller:
        """The caller of this request; 401 (or 429 after too many failures) otherwise."""
        address = environ.get("REMOTE_ADDR") or "-"
        presented = _presented_key(headers)
        if presented is not None:
            name = self._verifier.verify(presented)
            if name is not None:
                return self._key_callers[name]
            return self._refuse(environ, address, "the API key is not valid")
        subject: ClientSubject | None = environ.get(CLIENT_SUBJECT_KEY)
        if subject is not None:
            caller = self._cert_callers.get(_normal_subject(subject.dn))
            if caller is None and subject.cn is not None:
                caller = self._cert_callers.get(_normal_subject(subject.cn))
            if caller is not None:
                return caller
            return self._refuse(
                environ, address, "the client certificate's subject is not a known caller"
            )
        return self._refuse(environ, address, "no credential was presented")

    def _refuse(self, environ: Mapping[str, Any], address: str, reason: str) -> Caller:
        blocked = self._failures.blocked(address)
        self._failures.add(address)
        log.warning(
            "Authentication failed from %s for %s %s: %s",
            address,
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"),
            reason,
        )
        if blocked:
            raise TooManyRequests(
                "Too many failed authentication attempts from this address; retry in "
                f"{self._failures.seconds_left()} s with a valid API key"
            )
        raise Unauthorized(
            f"Authentication required: {reason}. Send the key as X-Api-Key: <key> or "
            "Authorization: Bearer <key>"
        )


def _presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("X-Api-Key")
    if key:
        return key.strip()
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # a credential of another scheme is a wrong one, not an absent one
    return None


def _caller(
    name: str, kind: Any, item: Mapping[str, Any], enable_keys: list[str], where: str
) -> Caller:
    scopes = list(item.get("scopes") or [])
    bad = unknown_scopes(scopes, enable_keys)
    if bad:
        raise AuthConfigError(
            f"{where}.scopes: '{bad[0]}' matches no enable key (use read, *, or keys of "
            "restServerEndpointsEnable such as senseStartTask or scheduler.*)"
        )
    tasks = item.get("tasks")
    namespaces = item.get("kvNamespaces")
    directories = item.get("fileDirectories")
    schedules = item.get("schedules")
    return Caller(
        name=name,
        kind=kind,
        scopes=frozenset(scopes),
        tasks=None if tasks is None else TaskScope.from_config(tasks),
        kv_namespaces=None if namespaces is None else tuple(namespaces),
        file_directories=None if directories is None else tuple(directories),
        schedules=None if schedules is None else frozenset(schedules),
    )


def _normal_subject(subject: str) -> str:
    """A DN or CN compared without case in attribute names or spaces around separators."""
    if "=" not in subject:
        return subject.strip()
    parts = []
    for part in subject.split(","):
        attribute, _, value = part.partition("=")
        parts.append(f"{attribute.strip().upper()}={value.strip()}")
    return ",".join(parts)


def authenticator_for(config: Config) -> Authenticator | None:
    """The authenticator when ``restServerConfig.auth.enable``, else ``None``; warns when
    auth is off and the API listens beyond this machine. ``ConfigError`` names the key."""
    auth = config.get("restServerConfig.auth")
    if auth.get("enable") is not True:
        if not _loopback(config.get("restServerConfig.serverHost")):
            log.warning(
                "The REST API listens on %s with authentication off: anyone who can reach "
                "the port may start tasks and change files (restServerConfig.auth, "
                "docs/security.md)",
                config.get("restServerConfig.serverHost"),
            )
        return None
    if auth.get("clientCertificates") and not client_subjects_supported(
        config.get("restServerConfig.server")
    ):
        raise ConfigError(
            "Butler.restServerConfig.auth.clientCertificates: the "
            f"{config.get('restServerConfig.server')} server does not tell the app which "
            "certificate a caller presented; use server: waitress"
        )
    try:
        authenticator, warnings = Authenticator.from_config(auth, config.contract.enable_keys)
    except AuthConfigError as exc:
        raise ConfigError(str(exc)) from None
    for warning in warnings:
        log.warning("%s", warning)
    return authenticator


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
