"""Butler's own cron schedules: the schedule file, its rules, the timelines, the firing thread.

One module per job, so each can be read and tested on its own:

* :mod:`~butler.schedules.model`: schedule fields and their rules;
* :mod:`~butler.schedules.store`: the YAML file, with :mod:`~butler.schedules.yaml_codec`
  (its fast path), :mod:`~butler.schedules.files` (atomic writes) and
  :mod:`~butler.schedules.run_state` (the run-time sidecar);
* :mod:`~butler.schedules.timeline`: cron expressions in time zones, DST (the ``dst`` modes);
* :mod:`~butler.schedules.preview` and :mod:`~butler.schedules.walls`: the next fires of a
  schedule, saved or not, fast enough for 1,000 at a time;
* :mod:`~butler.schedules.plan`: what fires when;
* :mod:`~butler.schedules.clock` and :mod:`~butler.schedules.firing`: the scheduler thread.
"""

from butler.schedules.clock import SystemClock
from butler.schedules.firing import MAX_WAIT, Scheduler
from butler.schedules.model import (
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    STARTUP_STATES,
    ScheduleValidationError,
    check_cron,
    check_name,
    check_tags,
    check_task_id,
    check_timezone,
)
from butler.schedules.store import ScheduleFileError, ScheduleStore
from butler.schedules.timeline import CronTimeline

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_WAIT",
    "STARTUP_STATES",
    "CronTimeline",
    "ScheduleFileError",
    "ScheduleStore",
    "ScheduleValidationError",
    "Scheduler",
    "SystemClock",
    "check_cron",
    "check_name",
    "check_tags",
    "check_task_id",
    "check_timezone",
]
