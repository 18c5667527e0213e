"""The plugin contract of Butler.

Plugins implement these hooks with ``@butler.hookimpl``. Built-in plugins live in the
``butler_plugins`` package (the ``plugins/`` folder of the source tree); third-party ones
register a module under the ``butler`` entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from butler.config import Config
    from butler.endpoints import Endpoint
    from butler.services import Services

hookspec = pluggy.HookspecMarker("butler")
hookimpl = pluggy.HookimplMarker("butler")


@hookspec
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    """Return the REST endpoints this plugin offers.

    Called once while the app is built. Return every endpoint the plugin can serve, each
    tagged with its ``restServerEndpointsEnable`` key (``"butlerping"``, or a dotted key for
    nested groups such as ``"scheduler.getSchedule"``); the core mounts only those whose key
    is true, so a plugin never reads the enable map itself. Views close over the services
    they need; they must not build long-lived clients of their own.
    """
