"""What a config of the original Butler can switch on that this version does not do.

Admins upgrade by pointing Butler for Python at their old config file. A feature that file
switches on and this version lacks must be named at ``check-config`` and at start-up, with
its replacement where there is one, instead of disappearing in silence. The lists are data:
:mod:`butler.config_checks` reads them, so adding a feature here needs no code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unsupported:
    """One switch of the original's config (dotted under ``Butler:``) with no feature here.

    The switch counts as on when it is true and every enclosing section's own ``enable`` is
    true too, as the original reads them (``emailNotification.enable`` gates its alerts).
    ``feature`` is a noun phrase (the message reads "this version has no <feature>");
    ``instead`` says what to do instead. With ``instead_key`` it is said only when a loaded
    plugin declares that ``restServerEndpointsEnable`` key, so a build without the
    replacement never points the admin at a route it does not have. A loaded plugin that
    claims the section holding the switch (``heartbeat`` for ``heartbeat.enable``) has the
    feature, so it is not named.
    """

    path: str
    feature: str
    instead: str = ""
    instead_key: str | None = None


SILENCE = "set it to false to silence this warning"

UNSUPPORTED: tuple[Unsupported, ...] = (
    Unsupported("anonTelemetry", "anonymous telemetry", f"nothing is sent; {SILENCE}"),
    Unsupported(
        "systemInfo.enable",
        "host system information gathering",
        f"none is needed (Windows paths work without it); {SILENCE}",
    ),
    Unsupported(
        "configVisualisation.enable",
        "config visualisation web server",
        "`butler check-config -c <file>` summarises the config instead",
    ),
    Unsupported(
        "heartbeat.enable",
        "heartbeats to heartbeat.remoteURL",
        "let the monitoring tool poll GET /health instead",
        "health",
    ),
    Unsupported(
        "dockerHealthCheck.enable",
        "Docker health-check server on dockerHealthCheck.port",
        "use GET /health on the REST port instead",
        "health",
    ),
    Unsupported(
        "uptimeMonitor.enable",
        "uptime monitor (uptime and memory to the log, InfluxDB or New Relic)",
        "let a Prometheus scraper read GET /metrics instead",
        "metrics",
    ),
    Unsupported(
        "influxDb.enable",
        "InfluxDB storage of reload events and metrics",
        "let a Prometheus scraper read GET /metrics instead (Telegraf can forward it to InfluxDB)",
        "metrics",
    ),
    Unsupported(
        "scriptLog.storeOnDisk.clientManaged.reloadTaskFailure.enable",
        "disk storage of failed reloads' script logs",
    ),
    Unsupported(
        "scriptLog.storeOnDisk.qsCloud.appReloadFailure.enable",
        "disk storage of failed Qlik Cloud app reloads' script logs",
    ),
    Unsupported("qlikSenseVersion.versionMonitor.enable", "Qlik Sense version monitor"),
    Unsupported(
        "qlikSenseLicense.serverLicenseMonitor.enable", "Qlik Sense server license monitor"
    ),
    Unsupported("qlikSenseLicense.licenseMonitor.enable", "Qlik Sense access license monitor"),
    Unsupported(
        "qlikSenseLicense.licenseRelease.enable", "release of unused Qlik Sense access licenses"
    ),
    Unsupported("teamsNotification.reloadTaskFailure.enable", "Teams alerts for failed reloads"),
    Unsupported("teamsNotification.reloadTaskAborted.enable", "Teams alerts for aborted reloads"),
    Unsupported("slackNotification.reloadTaskFailure.enable", "Slack alerts for failed reloads"),
    Unsupported("slackNotification.reloadTaskAborted.enable", "Slack alerts for aborted reloads"),
    Unsupported("emailNotification.reloadTaskFailure.enable", "e-mail alerts for failed reloads"),
    Unsupported("emailNotification.reloadTaskAborted.enable", "e-mail alerts for aborted reloads"),
    Unsupported(
        "emailNotification.reloadTaskSuccess.enable", "e-mail notices of successful reloads"
    ),
    Unsupported(
        "emailNotification.distributeTaskFailure.enable",
        "e-mail alerts for failed distribute tasks",
    ),
    Unsupported(
        "emailNotification.distributeTaskSuccess.enable",
        "e-mail notices of successful distribute tasks",
    ),
    Unsupported(
        "emailNotification.preloadTaskFailure.enable", "e-mail alerts for failed preload tasks"
    ),
    Unsupported(
        "emailNotification.preloadTaskSuccess.enable",
        "e-mail notices of successful preload tasks",
    ),
    Unsupported(
        "webhookNotification.enable",
        "outgoing webhooks for failed or aborted reloads, service and license events",
    ),
    Unsupported("incidentTool.signl4.enable", "Signl4 incidents for failed or aborted reloads"),
    Unsupported(
        "incidentTool.newRelic.enable",
        "New Relic incidents (events and logs for failed or aborted reloads and services)",
    ),
    Unsupported("signl4.enable", "Signl4 incidents for failed reloads"),
    Unsupported("newRelic.enable", "New Relic events and logs for failed reloads"),
    Unsupported(
        "udpServerConfig.enable",
        "UDP server for task events from Qlik Sense log appenders "
        "(nor the alerts and MQTT messages they trigger)",
    ),
    Unsupported("serviceMonitor.enable", "Windows service monitor"),
    Unsupported("qlikSenseCloud.enable", "Qlik Cloud event handling and alerts"),
    Unsupported(
        "mqttConfig.qlikSenseCloud.event.mqttForward.enable",
        "MQTT forwarding of Qlik Cloud events",
    ),
    Unsupported(
        "restServerApiDocGenerate",
        "API documentation files written at start-up",
        "`butler openapi -c <file>` prints the OpenAPI document and GET /documentation serves it",
    ),
)
"""The original's switches (its full config template, section by section) with no feature
here. Sub-switches of a listed feature are not listed: the feature is named once."""

RESERVED_ENABLE_KEYS: tuple[str, ...] = (
    "health",
    "metrics",
    "plugins",
    "dashboard",
    "audit",
)
"""``restServerEndpointsEnable`` keys of features planned for Butler for Python. A config
written for a later version may carry them, so before their plugin is loaded they are
accepted with a warning instead of being refused as misspellings."""
