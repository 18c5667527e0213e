"""API keys: the hash round trip, routing by key id, and the verified-key cache."""

import threading

import pytest

from butler.auth import keys
from butler.auth.keys import KeyHash, KeyVerifier, hash_key, key_id_of, new_key


@pytest.fixture
def scrypt_runs(monkeypatch):
    """Counts scrypt runs, so a test can say how much work a check did."""
    runs = []
    real = keys._scrypt

    def counting(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keys, "_scrypt", counting)
    return runs


def test_new_key_shape():
    key = new_key()
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "bk"
    assert len(key_id) == 8
    assert key_id_of(key) == key_id
    assert len(secret) >= 43
    assert new_key() != key


def test_round_trip():
    key = new_key()
    parsed = KeyHash.parse(hash_key(key))
    assert parsed.key_id == key_id_of(key)
    assert parsed.verify(key)


def test_wrong_key_does_not_verify():
    key = new_key()
    parsed = KeyHash.parse(hash_key(key))
    assert not parsed.verify(new_key())
    assert not parsed.verify(key + "x")
    assert not parsed.verify("")


def test_same_key_hashes_differently_each_time():
    key = new_key()
    assert hash_key(key) != hash_key(key)


def test_hash_string_never_contains_the_key():
    key = new_key()
    text = hash_key(key)
    secret = key.split("_", 2)[2]
    assert key not in text
    assert secret not in text
    assert secret[:12] not in text
    assert secret not in repr(KeyHash.parse(text))


def test_key_not_in_bk_form_hashes_without_an_id():
    text = hash_key("my-old-shared-secret")
    assert text.split("$")[1] == ""
    parsed = KeyHash.parse(text)
    assert parsed.key_id == ""
    assert parsed.verify("my-old-shared-secret")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain-text-key",
        "pbkdf2$abcdefgh$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$16384$8$1$c2FsdHNhbHRzYWx0",
        "scrypt$ABCDEFGH$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$lots$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$1000$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$1073741824$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$131072$64$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$16384$8$1$not*base64$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abcdefgh$16384$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
    ],
    ids=[
        "empty",
        "no-fields",
        "other-scheme",
        "too-few-fields",
        "bad-key-id",
        "n-not-integer",
        "n-not-power-of-2",
        "n-too-large",
        "memory-too-large",
        "salt-not-base64",
        "salt-too-short",
    ],
)
def test_malformed_hash_is_refused_without_echoing_it(text):
    with pytest.raises(ValueError) as refused:
        KeyHash.parse(text)
    message = str(refused.value)
    assert message
    for part in text.split("$"):
        if len(part) > 8:
            assert part not in message


def verifier_of(*named_keys, plain=()):
    entries = [(name, KeyHash.parse(hash_key(key)), None) for name, key in named_keys]
    entries += [(name, None, key) for name, key in plain]
    return KeyVerifier(entries)


def test_verifier_names_the_caller():
    alice, bob = new_key(), new_key()
    verifier = verifier_of(("alice", alice), ("bob", bob))
    assert verifier.verify(alice) == "alice"
    assert verifier.verify(bob) == "bob"
    assert verifier.verify(new_key()) is None
    assert verifier.verify("") is None


def test_unknown_key_id_runs_no_scrypt(scrypt_runs):
    verifier = verifier_of(("alice", new_key()), ("bob", new_key()))
    scrypt_runs.clear()
    stranger = new_key()
    assert verifier.verify(stranger) is None
    assert verifier.verify("not-a-bk-key") is None
    assert scrypt_runs == []


def test_known_key_id_runs_scrypt_only_for_that_hash(scrypt_runs):
    alice = new_key()
    verifier = verifier_of(("alice", alice), ("bob", new_key()), ("carol", new_key()))
    scrypt_runs.clear()
    forged = alice[:12] + "_" + "x" * 43  # alice's public id, a guessed secret
    assert verifier.verify(forged) is None
    assert len(scrypt_runs) == 1


def test_id_less_hashes_are_tried_for_a_key_not_in_bk_form(scrypt_runs):
    verifier = verifier_of(
        ("old", "legacy-secret-1"), ("older", "legacy-secret-2"), ("new", new_key())
    )
    scrypt_runs.clear()
    assert verifier.verify("legacy-secret-2") == "older"
    assert 1 <= len(scrypt_runs) <= 2


def test_plain_keys(scrypt_runs):
    verifier = verifier_of(("hashed", new_key()), plain=[("ci", "plain-ci-key"), ("bot", "b0t")])
    scrypt_runs.clear()
    assert verifier.verify("plain-ci-key") == "ci"
    assert verifier.verify("b0t") == "bot"
    assert verifier.verify("plain-ci-ke") is None
    assert verifier.verify("plain-ci-key ") is None
    assert scrypt_runs == []


def test_a_verified_key_is_not_hashed_again(scrypt_runs):
    alice = new_key()
    verifier = verifier_of(("alice", alice))
    scrypt_runs.clear()
    assert verifier.verify(alice) == "alice"
    assert len(scrypt_runs) == 1
    for _ in range(5):
        assert verifier.verify(alice) == "alice"
    assert len(scrypt_runs) == 1


def test_a_failed_key_is_not_cached(scrypt_runs):
    alice = new_key()
    verifier = verifier_of(("alice", alice))
    forged = alice[:12] + "_" + "y" * 43
    scrypt_runs.clear()
    for _ in range(3):
        assert verifier.verify(forged) is None
    assert len(scrypt_runs) == 3
    assert verifier._verified == {}


def test_verifier_is_safe_across_threads():
    named = [(f"caller{i}", new_key()) for i in range(4)]
    verifier = verifier_of(*named)
    wrong = []

    def check(name, key):
        for _ in range(20):
            if verifier.verify(key) != name:
                wrong.append(name)

    threads = [threading.Thread(target=check, args=pair) for pair in named * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_costlier_hash_within_the_limit_verifies():
    key = new_key()
    digest = keys._scrypt(key, b"0123456789abcdef", 2**15, 16, 2, 32)
    text = "$".join(
        [
            "scrypt",
            key_id_of(key),
            "32768",
            "16",
            "2",
            keys._b64(b"0123456789abcdef"),
            keys._b64(digest),
        ]
    )
    assert KeyHash.parse(text).verify(key)
