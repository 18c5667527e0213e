from butler.schedule_store import ScheduleStore
from butler.scheduler import Scheduler

__all__ = ["ScheduleStore", "Scheduler"]
