"""``butler new-api-key``: run as a real process, its lines pasted into a YAML document."""

import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from butler.auth.keys import KeyHash, KeyVerifier


def new_api_key(*words):
    return subprocess.run(
        [sys.executable, "-m", "butler", "new-api-key", *words],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pasted(stdout):
    """The printed key, and the config the pasted lines make under their parent keys."""
    lines = stdout.splitlines()
    intro, key = lines[0].rsplit(" ", 1)
    assert intro.startswith('API key for "')
    assert intro.endswith('" (shown once, store it now):')
    assert lines[1] == "Paste under Butler.restServerConfig.auth.apiKeys in your config file:"
    document = "Butler:\n  restServerConfig:\n    auth:\n      apiKeys:\n"
    document += "\n".join(lines[2:]) + "\n"
    config = YAML(typ="safe", pure=True).load(document)
    return key, config["Butler"]["restServerConfig"]["auth"]["apiKeys"]


def test_printed_key_verifies_against_printed_hash():
    result = new_api_key("--name", "reload-bot", "--scopes", "senseStartTask,read")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    key, entries = pasted(result.stdout)
    assert key.startswith("bk_")
    (entry,) = entries
    assert entry["name"] == "reload-bot"
    assert entry["scopes"] == ["senseStartTask", "read"]
    assert key not in entry["keyHash"]
    assert KeyHash.parse(entry["keyHash"]).verify(key)
    verifier = KeyVerifier([(entry["name"], KeyHash.parse(entry["keyHash"]), None)])
    assert verifier.verify(key) == "reload-bot"
    assert result.stdout.count(key) == 1


def test_default_scope_is_read_and_each_run_makes_a_new_key():
    first, second = new_api_key("--name", "monitor"), new_api_key("--name", "monitor")
    key, (entry,) = pasted(first.stdout)
    other, _ = pasted(second.stdout)
    assert entry["scopes"] == ["read"]
    assert key != other


@pytest.mark.parametrize("name", ["yes", "1234", "a: b", "ops #1", "Zoë's bot"])
def test_names_yaml_would_misread_are_quoted(name):
    result = new_api_key("--name", name)
    _, (entry,) = pasted(result.stdout)
    assert entry["name"] == name


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([], "--name"),
        (["--name", " "], "--name must not be empty"),
        (["--name", "x", "--scopes", ","], "at least one scope"),
        (["--name", "x", "--scopes", "read,a b"], "not a scope name: a b"),
    ],
)
def test_bad_arguments_exit_2(words, message):
    result = new_api_key(*words)
    assert result.returncode == 2
    assert message in result.stderr
    assert "bk_" not in result.stdout


def test_config_file_option_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "butler", "-c", "butler.yaml", "new-api-key", "--name", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "new-api-key does not take -c/--configfile" in result.stderr
