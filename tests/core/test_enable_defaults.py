"""Enable keys with a default: absent in an old config means on, explicit false means off."""

from __future__ import annotations

import pytest

from butler.config import Config, endpoint_enable_map


def config(tmp_path, enable):
    butler = {} if enable is None else {"restServerEndpointsEnable": enable}
    return Config.from_mapping(butler, tmp_path)


@pytest.mark.parametrize("key", ["health", "metrics"])
def test_absent_default_on_key_is_enabled(tmp_path, key):
    assert config(tmp_path, {"butlerping": True}).endpoint_enabled(key)
    assert config(tmp_path, None).endpoint_enabled(key)
    assert key in config(tmp_path, {"butlerping": True}).enabled_endpoint_keys


@pytest.mark.parametrize("value", [False, "false", "FALSE"])
@pytest.mark.parametrize("key", ["health", "metrics"])
def test_explicit_false_switches_it_off(tmp_path, key, value):
    cfg = config(tmp_path, {key: value})
    assert not cfg.endpoint_enabled(key)
    assert key not in cfg.enabled_endpoint_keys


def test_other_keys_stay_off_when_absent(tmp_path):
    cfg = config(tmp_path, {"health": True})
    assert not cfg.endpoint_enabled("butlerping")
    assert cfg.enabled_endpoint_keys == ("health", "metrics")


def test_enable_map_sets_default_on_keys_too(tmp_path):
    assert not config(tmp_path, endpoint_enable_map(False)).enabled_endpoint_keys
    every = endpoint_enable_map(True)
    assert every["health"] is True and every["metrics"] is True
