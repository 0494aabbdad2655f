"""Scheduling strategies and the capacity-safe placer."""

from hodei_plugins.schedulers.base import (
    AFFINITY_PREFIX,
    ANTI_AFFINITY_PREFIX,
    DEFAULT_STRATEGY,
    STRATEGY_LABEL,
    JobRequest,
    Scheduler,
    Strategy,
    WorkerView,
)
from hodei_plugins.schedulers.builtin import (
    BUILTIN_STRATEGIES,
    FirstAvailable,
    LabelAffinity,
    LeastLoaded,
    MostCapacity,
    RoundRobin,
)

__all__ = [
    "AFFINITY_PREFIX",
    "ANTI_AFFINITY_PREFIX",
    "BUILTIN_STRATEGIES",
    "DEFAULT_STRATEGY",
    "STRATEGY_LABEL",
    "FirstAvailable",
    "JobRequest",
    "LabelAffinity",
    "LeastLoaded",
    "MostCapacity",
    "RoundRobin",
    "Scheduler",
    "Strategy",
    "WorkerView",
]
