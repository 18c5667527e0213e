from pathlib import Path

import pytest

from butler.config import ConfigError, default_contract, load_config
from tests.fixtures.original_config import filled_template, write_config

ENDPOINT_KEYS = tuple(default_contract().enable_keys)

DATA = Path(__file__).parent.parent / "data"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "butler.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_original_full_layout_loads_once_its_placeholders_are_filled(tmp_path):
    config = load_config(write_config(tmp_path, filled_template()))
    assert config.endpoint_enabled("butlerping")
    assert config.endpoint_enabled("newRelic.postNewRelicEvent")
    assert not config.endpoint_enabled("scheduler.getSchedule")
    assert config.get("configQRS.port") == 4242
    assert config.get("thirdPartyToolsCredentials.newRelic")[0]["accountId"] == "1234567"
    assert config.get("influxDb.hostPort") == 8086  # unknown sections are kept, not validated


def test_example_config_loads():
    config = load_config(Path(__file__).parents[2] / "config.example.yaml")
    assert config.endpoint_enabled("butlerping")
    assert config.get("restServerConfig.serverPort") == 8080


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "Butler:\n  restServerConfig:\n    serverPort: 80x\n",
            'Butler.restServerConfig.serverPort: must be an integer, got "80x"',
        ),
        (
            "Butler:\n  restServerEndpointsEnable:\n    butlerping: maybe\n",
            'Butler.restServerEndpointsEnable.butlerping: must be true or false, got "maybe"',
        ),
        (
            "Butler:\n  restServerEndpointsEnable:\n    senseStartTask: true\n"
            "  cert:\n    clientCert: a.pem\n    clientCertKey: b.pem\n"
            "  configQRS:\n    port: 4242\n",
            "Butler.configQRS.host: is required",
        ),
        (
            "Butler:\n  restServerEndpointsEnable:\n    fileCopy: true\n"
            "  fileCopyApprovedDirectories:\n    - fromDirectory: /a\n",
            "Butler.fileCopyApprovedDirectories.0.toDirectory: is required",
        ),
        (
            "Butler:\n  logLevel: loud\n",
            'Butler.logLevel: must be one of silly, debug, verbose, info, warn, error, got "loud"',
        ),
        (
            "Butler:\n  mqttConfig:\n    enable: true\n    brokerHost: h\n    brokerPort: 99999\n",
            "Butler.mqttConfig.brokerPort: must be a port number 1-65535, got 99999",
        ),
        (
            "Butler:\n  restServerEndpointsEnable:\n    fileDelete: true\n"
            "  fileDeleteApprovedDirectories: /just/a/string\n",
            "Butler.fileDeleteApprovedDirectories: must be a list of strings (or null)",
        ),
    ],
)
def test_broken_config_names_the_key(tmp_path, yaml_text, expected):
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, yaml_text))
    message = str(excinfo.value)
    assert expected in message
    assert "\n" not in message


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"\(line \d+\): not valid YAML"):
        load_config(write(tmp_path, "Butler:\n  a: 1\n  b: [unclosed\n"))


def test_missing_butler_key(tmp_path):
    with pytest.raises(ConfigError, match="'Butler' key"):
        load_config(write(tmp_path, "Other: 1\n"))


def test_null_lists_are_accepted(tmp_path):
    config = load_config(
        write(
            tmp_path,
            "Butler:\n  restServerEndpointsEnable:\n    fileCopy: true\n    fileDelete: true\n"
            "  fileCopyApprovedDirectories: null\n  fileDeleteApprovedDirectories:\n"
            "  startTaskFilter:\n    enable: true\n    allowTask:\n      taskId: null\n"
            "      tag:\n      customProperty: null\n",
        )
    )
    assert config.get("fileCopyApprovedDirectories") is None
    assert config.get("startTaskFilter.allowTask.tag") is None


def test_overrides_are_validated(tmp_path):
    path = write(tmp_path, "Butler:\n  logLevel: info\n")
    assert load_config(path, {"logLevel": "debug"}).log_level == "debug"
    with pytest.raises(ConfigError, match="rateLimit"):
        load_config(path, {"restServerConfig.rateLimit": -1})


def test_relative_paths_resolve_against_config_folder(tmp_path):
    config = load_config(write(tmp_path, "Butler: {}\n"))
    assert config.resolve_path("cert/client.pem") == tmp_path / "cert" / "client.pem"


def test_string_booleans_in_enable_map(tmp_path):
    config = load_config(
        write(tmp_path, "Butler:\n  restServerEndpointsEnable:\n    butlerping: 'true'\n")
    )
    assert config.endpoint_enabled("butlerping")


def test_enabled_keys_follow_file_order(tmp_path):
    config = load_config(
        write(
            tmp_path,
            "Butler:\n  restServerEndpointsEnable:\n    senseStartTask: true\n"
            "    butlerping: true\n    scheduler:\n      getSchedule: true\n"
            "  cert: {clientCert: a, clientCertKey: b}\n  configQRS: {host: h}\n",
        )
    )
    assert config.enabled_endpoint_keys == (
        "senseStartTask",
        "butlerping",
        "scheduler.getSchedule",
        "health",  # on by default, after the file's own keys
        "metrics",
    )
    assert set(config.enabled_endpoint_keys) <= set(ENDPOINT_KEYS)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("  mqttConfig:\n    enable: true\n    brokerHost: h\n", "mqttConfig.password"),
        (
            "  restServerEndpointsEnable:\n    newRelic:\n      postNewRelicEvent: true\n"
            "  restServerEndpointsConfig:\n    newRelic:\n      postNewRelicEvent:\n"
            "        url: http://x/\n  thirdPartyToolsCredentials:\n    newRelic:\n"
            "      - accountName: a\n        accountId: 1\n",
            "thirdPartyToolsCredentials.newRelic.0.insertApiKey",
        ),
        (
            "  restServerEndpointsEnable:\n    slackPostMessage: true\n"
            "  slackNotification:\n    restMessage:\n",
            "slackNotification.restMessage.webhookURL",
        ),
    ],
)
def test_config_errors_never_show_secret_values(tmp_path, section, key):
    leaf = key.rsplit(".", 1)[-1]
    path = tmp_path / "butler.yaml"
    text = "Butler:\n" + section
    secret = "98765432123"
    if leaf == "password":
        text += f"    password: {secret}\n"
    elif leaf == "insertApiKey":
        text += f"        insertApiKey: {secret}\n"
    else:
        text += f"      webhookURL: {secret}\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"Butler.{key}: ")
    assert secret not in str(info.value)
    assert str(info.value).endswith("got <redacted>")


def test_server_defaults_to_waitress_and_granian_is_a_choice(tmp_path):
    assert load_config(write(tmp_path, "Butler: {}\n")).get("restServerConfig.server") == "waitress"
    path = write(tmp_path, "Butler:\n  restServerConfig: {server: granian}\n")
    assert load_config(path).get("restServerConfig.server") == "granian"
    path = write(tmp_path, "Butler:\n  restServerConfig: {server: gunicorn}\n")
    with pytest.raises(ConfigError, match=r"restServerConfig\.server.*must be waitress or granian"):
        load_config(path)


def test_granian_without_the_extra_is_a_config_error(tmp_path, monkeypatch):
    import butler.config_schema

    monkeypatch.setattr(butler.config_schema, "granian_installed", lambda: False)
    path = write(tmp_path, "Butler:\n  restServerConfig: {server: granian}\n")
    with pytest.raises(ConfigError, match=r"granian is not installed: pip install"):
        load_config(path)
