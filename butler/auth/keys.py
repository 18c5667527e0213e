"""API keys: how they are made, hashed for the config file, and checked per request.

A key is ``bk_<keyId>_<secret>``. The key id is public: it names which configured hash to
try, so an unknown key costs one dict lookup instead of one scrypt run per configured key
(scrypt is slow on purpose; N of them per request would be a denial of service). The config
holds only a salted scrypt hash (``hashlib.scrypt``, standard library), so the file never
holds a usable key.

A verified key is remembered by the SHA-256 of what was presented: a caller's next request
then costs one SHA-256 and one dict lookup, not a scrypt run. Failures are not remembered
(the failed-attempts limiter bounds them), so a flood of wrong keys cannot grow the cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass

KEY_PREFIX = "bk_"
_KEY_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case
_KEY_ID_LENGTH = 8
_KEY_RE = re.compile(rf"^{KEY_PREFIX}([a-z2-7]{{{_KEY_ID_LENGTH}}})_[A-Za-z0-9_-]+$")

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_DK_BYTES = 32
# scrypt needs about 128 * n * r bytes. Hashes made with up to 8 times the default cost
# still verify; a hash asking for more is refused when parsed, not when it allocates.
_MAX_N = 2**17
_MAX_COST = 128 * _MAX_N * _R
_MAXMEM = 2 * _MAX_COST


def new_key() -> str:
    """A fresh random key: 8 characters of public key id, 256 bits of secret."""
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(_KEY_ID_LENGTH))
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(presented: str) -> str | None:
    """The public key id of a ``bk_`` key, or None for a key in any other form."""
    match = _KEY_RE.match(presented)
    return match.group(1) if match else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        key.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length
    )


def hash_key(key: str) -> str:
    """The config-file form of ``key``: ``scrypt$<keyId>$<n>$<r>$<p>$<salt>$<hash>``.

    The key id is copied in clear so verification can route by it; a key not in ``bk_``
    form gets an empty id and is then tried against every id-less hash.
    """
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(key, salt, _N, _R, _P, _DK_BYTES)
    key_id = key_id_of(key) or ""
    return "$".join((_SCHEME, key_id, str(_N), str(_R), str(_P), _b64(salt), _b64(digest)))


@dataclass(frozen=True)
class KeyHash:
    """One parsed ``keyHash`` from the config."""

    key_id: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __repr__(self) -> str:
        # The hash is not the key, but it is what an offline guesser needs: keep it out of
        # logs and error messages that print objects.
        return f"KeyHash(key_id={self.key_id!r})"

    @classmethod
    def parse(cls, text: str) -> KeyHash:
        """Parse a hash string; the error names what is wrong, never the text itself."""
        parts = text.split("$")
        if len(parts) != 7 or parts[0] != _SCHEME:
            raise ValueError(
                "not a Butler key hash (expected scrypt$<keyId>$<n>$<r>$<p>$<salt>$<hash>, "
                "as printed by butler new-api-key)"
            )
        _, key_id, n_text, r_text, p_text, salt_text, digest_text = parts
        if key_id and not re.fullmatch(rf"[a-z2-7]{{{_KEY_ID_LENGTH}}}", key_id):
            raise ValueError("key hash: the key id is not 8 base32 characters")
        try:
            n, r, p = int(n_text), int(r_text), int(p_text)
        except ValueError:
            raise ValueError("key hash: n, r and p must be integers") from None
        if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= 16 or 128 * n * r > _MAX_COST:
            raise ValueError(
                "key hash: scrypt cost out of range (n a power of 2, p 1..16, "
                f"128 * n * r at most {_MAX_COST} bytes)"
            )
        try:
            salt = base64.b64decode(salt_text, validate=True)
            digest = base64.b64decode(digest_text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("key hash: salt or hash is not base64") from None
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("key hash: salt or hash too short")
        return cls(key_id, n, r, p, salt, digest)

    def verify(self, key: str) -> bool:
        """Whether ``key`` is the key this hash was made from (one scrypt run)."""
        candidate = _scrypt(key, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


KeyEntry = tuple[str, KeyHash | None, str | None]
"""A configured key: caller name, its hash, or (discouraged) its plain text."""


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class KeyVerifier:
    """Finds which configured caller a presented key belongs to; safe across threads."""

    def __init__(self, entries: Iterable[KeyEntry]):
        self._by_id: dict[str, list[tuple[str, KeyHash]]] = {}
        self._plain: list[tuple[str, bytes]] = []
        for name, key_hash, plain in entries:
            if key_hash is not None:
                self._by_id.setdefault(key_hash.key_id, []).append((name, key_hash))
            if plain is not None:
                # Digests, not the text: compare_digest then compares equal lengths, so
                # the time taken says nothing about the configured key's length.
                self._plain.append((name, _sha256(plain)))
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def verify(self, presented: str) -> str | None:
        """The caller name of ``presented``, or None when no configured key matches."""
        fingerprint = _sha256(presented)
        with self._lock:
            name = self._verified.get(fingerprint)
        if name is not None:
            return name
        name = self._match(presented, fingerprint)
        if name is not None:
            with self._lock:
                self._verified[fingerprint] = name
        return name

    def _match(self, presented: str, fingerprint: bytes) -> str | None:
        found = None
        for name, digest in self._plain:
            # Every plain key is compared, so the time does not say which one matched.
            if hmac.compare_digest(fingerprint, digest) and found is None:
                found = name
        if found is not None:
            return found
        for name, key_hash in self._by_id.get(key_id_of(presented) or "", ()):
            if key_hash.verify(presented):
                return name
        return None
