"""Issue 12, defect 3: a config that would silently mean something else is refused.

Misspelled enable keys, template placeholders in settings that an enabled feature reads,
malformed URLs and task ids that are no GUIDs each stop loading with the key path; enable
keys of planned features are accepted with one warning until a plugin declares them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from butler.cli import main
from butler.config import Config, ConfigContract, ConfigError, EnableKey, default_contract
from tests.fixtures.original_config import filled_template, template, write_config

MakeConfig = Callable[..., Config]


@pytest.mark.parametrize(
    ("enable", "message"),
    [
        (
            {"butlerpnig": True},
            "Butler.restServerEndpointsEnable.butlerpnig: unknown enable key (no loaded plugin "
            "declares it); did you mean butlerping?",
        ),
        (
            {"newRelic": {"postNewRelicEvnt": True}},
            "Butler.restServerEndpointsEnable.newRelic.postNewRelicEvnt: unknown enable key "
            "(no loaded plugin declares it); did you mean newRelic.postNewRelicEvent?",
        ),
        (
            {"apiListEnbledEndpoints": False},
            "Butler.restServerEndpointsEnable.apiListEnbledEndpoints: unknown enable key "
            "(no loaded plugin declares it); did you mean apiListEnabledEndpoints?",
        ),
        (
            {"SenseStartTask": True},
            "Butler.restServerEndpointsEnable.SenseStartTask: unknown enable key "
            "(no loaded plugin declares it); did you mean senseStartTask?",
        ),
        (
            {"frobnicate": True},
            "Butler.restServerEndpointsEnable.frobnicate: unknown enable key "
            "(no loaded plugin declares it)",
        ),
    ],
)
def test_an_unknown_enable_key_is_an_error_naming_the_nearest_known_one(
    make_config: MakeConfig, enable: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config({"restServerEndpointsEnable": enable})
    assert str(caught.value) == message


def test_check_config_refuses_a_misspelled_enable_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    butler = {"restServerEndpointsEnable": {"butlerping": True, "butlerpnig": True}}
    assert main(["check-config", "-c", str(write_config(tmp_path, butler))]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "Config error: Butler.restServerEndpointsEnable.butlerpnig: unknown enable key "
        "(no loaded plugin declares it); did you mean butlerping?"
    )
    assert "Config OK" not in captured.out


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"restServerEndpointsEnable": {"senseStartTask": True}},
            "Butler.cert.clientCert: still the config template's placeholder; set a real "
            'value, got "<path/to/cert/client.pem>"',
        ),
        (
            {
                "restServerEndpointsEnable": {"senseStartTask": True},
                "cert": {"clientCert": "c.pem", "clientCertKey": "k.pem", "clientCertCA": None},
            },
            "Butler.configQRS.host: still the config template's placeholder; set a real value, "
            'got "<FQDN or IP of Sense server where QRS is running>"',
        ),
        (
            {"restServerEndpointsEnable": {"createDirQVD": True}},
            "Butler.configDirectories.qvdPath: still the config template's placeholder; set a "
            'real value, got "<Path to folder under which QVDs are stored>"',
        ),
        (
            {
                "restServerEndpointsEnable": {"newRelic": {"postNewRelicEvent": True}},
                "thirdPartyToolsCredentials": {
                    "newRelic": [
                        {"accountName": "A", "insertApiKey": "k1", "accountId": 1},
                        {"accountName": "B", "insertApiKey": "<key>", "accountId": "<id>"},
                    ]
                },
            },
            "Butler.thirdPartyToolsCredentials.newRelic.1.insertApiKey: still the config "
            "template's placeholder; set a real value, got <redacted>",
        ),
    ],
)
def test_a_template_placeholder_read_by_an_enabled_feature_is_an_error(
    settings: dict[str, Any], message: str
) -> None:
    butler = {**template(), "restServerEndpointsEnable": {}, **settings}
    with pytest.raises(ConfigError) as caught:
        Config.from_mapping(butler, Path())
    assert str(caught.value) == message


def test_placeholders_of_unused_settings_stay_allowed(tmp_path: Path) -> None:
    """The template's e-mail, UDP and service-monitor placeholders are never read here; nor
    are Azure Event Grid's while MQTT talks to a plain broker."""
    butler = {
        **template(),
        "restServerEndpointsEnable": {"butlerping": True},
        "mqttConfig": {**template()["mqttConfig"], "enable": True},
    }
    config = Config.from_mapping(butler, tmp_path)
    assert config.get("mqttConfig.azureEventGrid.clientId") == "<client ID>"
    assert config.get("emailNotification.smtp.host") == "<FQDN or IP or SMTP server>"


def test_check_config_refuses_the_qvd_placeholder_that_createdirqvd_would_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    butler = {
        "restServerEndpointsEnable": {"createDirQVD": True},
        "configDirectories": {"qvdPath": "<Path to folder under which QVDs are stored>"},
    }
    assert main(["check-config", "-c", str(write_config(tmp_path, butler))]) == 2
    assert "Butler.configDirectories.qvdPath" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["butler.yaml"]


BAD_URLS = ["not a url", "insights-collector.eu01.nr-data.net", "ftp://host/x", "https://"]
BAD_URLS += ["https://host:99999/", "http://exa mple.com/", "http://[::1/", ""]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_new_relic_url_must_be_an_http_url(make_config: MakeConfig, url: str) -> None:
    settings = {
        "restServerEndpointsEnable": {"newRelic": {"postNewRelicMetric": True}},
        "thirdPartyToolsCredentials": {"newRelic": None},
        "restServerEndpointsConfig": {"newRelic": {"postNewRelicMetric": {"url": url}}},
    }
    with pytest.raises(ConfigError) as caught:
        make_config(settings)
    assert str(caught.value) == (
        "Butler.restServerEndpointsConfig.newRelic.postNewRelicMetric.url: must be an http(s) "
        f'URL, got "{url}"'
    )


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_slack_webhook_must_be_an_http_url_and_is_never_echoed(
    make_config: MakeConfig, url: str
) -> None:
    settings = {
        "restServerEndpointsEnable": {"slackPostMessage": True},
        "slackNotification": {"restMessage": {"webhookURL": url}},
    }
    with pytest.raises(ConfigError) as caught:
        make_config(settings)
    assert str(caught.value) == (
        "Butler.slackNotification.restMessage.webhookURL: must be an http(s) URL, got <redacted>"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://insights-collector.eu01.nr-data.net/",
        "http://127.0.0.1:9/metric/v1",
        "https://[::1]:8443/hook?x=1",
    ],
)
def test_http_urls_pass(make_config: MakeConfig, url: str) -> None:
    settings = {
        "restServerEndpointsEnable": {"slackPostMessage": True},
        "slackNotification": {"restMessage": {"webhookURL": url}},
    }
    assert make_config(settings).get("slackNotification.restMessage.webhookURL") == url


ALLOWED = ["e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e", "7552D9FC-D1BB-4975-9A38-18357DE531EA"]


@pytest.mark.parametrize("bad", ["not-a-guid", "e3b27f50b1c0487988fcc7cdd9c1cf3e", " "])
def test_an_allowed_task_id_that_is_no_guid_is_an_error_while_the_filter_is_on(
    make_config: MakeConfig, bad: str
) -> None:
    task_filter = {"enable": True, "allowTask": {"taskId": [*ALLOWED, bad]}}
    with pytest.raises(ConfigError) as caught:
        make_config({"startTaskFilter": task_filter})
    assert str(caught.value) == (
        f'Butler.startTaskFilter.allowTask.taskId.2: must be a GUID, got "{bad}"'
    )


def test_guids_in_any_case_pass_and_a_switched_off_filter_is_not_read(
    make_config: MakeConfig,
) -> None:
    config = make_config({"startTaskFilter": {"enable": True, "allowTask": {"taskId": ALLOWED}}})
    assert config.get("startTaskFilter.allowTask.taskId") == ALLOWED
    make_config({"startTaskFilter": {"enable": False, "allowTask": {"taskId": ["x"]}}})


RESERVED_WARNING = (
    "Butler.restServerEndpointsEnable.{} is true, but that feature is not available in this "
    "version (no loaded plugin declares it); the key is ignored"
)
PLANNED = ["plugins", "dashboard", "audit", "health", "metrics"]


@pytest.mark.parametrize("key", PLANNED)
def test_a_planned_enable_key_no_plugin_declares_is_accepted_with_one_warning(key: str) -> None:
    contract = _without(key)
    settings = {"restServerEndpointsEnable": {key: True, "butlerping": True}}
    config = Config.from_mapping(settings, Path(), contract=contract)
    assert config.warnings == [RESERVED_WARNING.format(key)]
    default_on = tuple(k for k in ("health", "metrics") if k != key)
    assert config.enabled_endpoint_keys == ("butlerping", *default_on)
    off = {"restServerEndpointsEnable": {key: False}}
    assert Config.from_mapping(off, Path(), contract=contract).warnings == []


@pytest.mark.parametrize("key", ["plugins", "health"])
def test_a_planned_enable_key_that_a_plugin_declares_is_a_normal_key(key: str) -> None:
    contract = _with(key)
    config = Config.from_mapping(
        {"restServerEndpointsEnable": {key: True}}, Path(), contract=contract
    )
    assert config.warnings == []
    assert config.endpoint_enabled(key)
    assert key in config.enabled_endpoint_keys


def test_the_plugins_key_is_declared_by_the_meta_plugin() -> None:
    assert "plugins" in default_contract().enable_keys


def test_the_original_template_as_shipped_is_refused_at_its_first_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "-c", str(write_config(tmp_path, template()))]) == 2
    assert capsys.readouterr().err.strip() == (
        "Config error: Butler.cert.clientCert: still the config template's placeholder; set a "
        'real value, got "<path/to/cert/client.pem>"'
    )


def test_the_filled_template_passes(tmp_path: Path) -> None:
    config = Config.from_mapping(filled_template(), tmp_path)
    assert config.endpoint_enabled("createDirQVD")
    assert config.get("configDirectories.qvdPath") == "qvd"


def _without(key: str) -> ConfigContract:
    base = default_contract()
    keys = {name: value for name, value in base.enable_keys.items() if name != key}
    return ConfigContract(enable_keys=keys, sections=base.sections)


def _with(key: str) -> ConfigContract:
    base = default_contract()
    return ConfigContract(
        enable_keys={**base.enable_keys, key: EnableKey(key)}, sections=base.sections
    )
