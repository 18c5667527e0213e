"""The New Relic plugin's config: credentials, destinations and the command-line options.

The original let ``--new-relic-account-name/-api-key/-account-id`` replace the credentials
in the file (so keys need not be written to disk); the options are kept here, with the
plugin, and become the ``thirdPartyToolsCredentials.newRelic`` override.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from butler.config_schema import (
    NameValue,
    OpenSchema,
    StaticHeaders,
    TimeoutSeconds,
    config_list,
    config_nested,
    config_string,
    config_url,
)
from butler_plugins.newrelic.client import NEW_RELIC_TIMEOUT

CREDENTIALS_KEY = "thirdPartyToolsCredentials.newRelic"
EVENT_KEY = "restServerEndpointsConfig.newRelic.postNewRelicEvent"
METRIC_KEY = "restServerEndpointsConfig.newRelic.postNewRelicMetric"


class NewRelicAccountSection(OpenSchema):
    accountName = config_string(required=True)
    insertApiKey = config_string(required=True)
    accountId = config_string(required=True)

    def load(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("accountId"), int):
            data = {**data, "accountId": str(data["accountId"])}
        return super().load(data, **kwargs)


class NewRelicDestinationSection(OpenSchema):
    destinationAccount = config_list(config_string())
    url = config_url(required=True)
    header = config_list(config_nested(NameValue))
    attribute = config_nested(StaticHeaders, load_default=dict)
    timeout = TimeoutSeconds(NEW_RELIC_TIMEOUT)


def apply_new_relic_cli(
    names: Sequence[str] | None, keys: Sequence[str] | None, ids: Sequence[str] | None
) -> list[dict[str, str]]:
    """Turn ``--new-relic-account-name/-api-key/-account-id`` into the config list.

    The three options come together with equal counts or not at all (as in the original);
    the result replaces ``Butler.thirdPartyToolsCredentials.newRelic``. The message never
    echoes a key.
    """
    given = [names or [], keys or [], ids or []]
    if not any(given):
        return []
    counts = [len(values) for values in given]
    if len(set(counts)) != 1 or 0 in counts:
        raise ValueError(
            "--new-relic-account-name, --new-relic-api-key and --new-relic-account-id must "
            f"be given together with the same number of values (got {counts[0]}, "
            f"{counts[1]} and {counts[2]})"
        )
    return [
        {"accountName": name, "insertApiKey": key, "accountId": str(account_id)}
        for name, key, account_id in zip(*given, strict=True)
    ]
