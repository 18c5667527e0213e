"""Who may call Butler: API keys (``keys``); the authenticator builds on them."""

from butler.auth.keys import KeyHash, KeyVerifier, hash_key, key_id_of, new_key

__all__ = ["KeyHash", "KeyVerifier", "hash_key", "key_id_of", "new_key"]
