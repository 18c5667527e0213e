"""``Butler.audit``: the config section of the audit trail (docs/audit.md).

Kept beside the trail it configures rather than in ``butler.config_schema``, so the audit
package owns its settings; the core only lists the section.
"""

from __future__ import annotations

from marshmallow import validate

from butler.config_schema import ConfigBoolean, OpenSchema, config_integer, config_string


class AuditSection(OpenSchema):
    """``Butler.audit``: off unless switched on, like every store that writes files."""

    enable = ConfigBoolean(load_default=False)
    dbFile = config_string(load_default="butler-audit.sqlite")
    retentionDays = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=90
    )
    jsonLinesFile = config_string(allow_none=True, load_default=None)
    flushEachCommit = ConfigBoolean(load_default=True)
    """false: a record survives a crash or kill of Butler, not a power cut (docs/audit.md)."""
