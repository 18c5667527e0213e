"""Runs: what became of every task and app reload Butler started (see docs/runs.md)."""

from butler.page_cursor import BadCursor
from butler.runs.model import FINAL_STATUSES, STATUSES, Run, is_final, outcome_of
from butler.runs.service import Runs, RunSettings
from butler.runs.store import RunFilter, RunStore, RunStoreError

__all__ = [
    "FINAL_STATUSES",
    "STATUSES",
    "BadCursor",
    "Run",
    "RunFilter",
    "RunSettings",
    "RunStore",
    "RunStoreError",
    "Runs",
    "is_final",
    "outcome_of",
]
