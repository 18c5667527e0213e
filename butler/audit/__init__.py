"""The audit trail: who changed what, committed before the change is answered (docs/audit.md)."""

from butler.audit.model import AuditRecord
from butler.audit.observer import StartAuditor
from butler.audit.service import AuditSettings, AuditTrail, AuditUnavailable
from butler.audit.store import AuditFilter, AuditStore, AuditStoreError
from butler.page_cursor import BadCursor

__all__ = [
    "AuditFilter",
    "AuditRecord",
    "AuditSettings",
    "AuditStore",
    "AuditStoreError",
    "AuditTrail",
    "AuditUnavailable",
    "BadCursor",
    "StartAuditor",
]
