"""Ray Tune sweeps over the Ray Train trainer: search space, ASHA, resume, sweep report.

:mod:`pomona.tune.space` and :mod:`pomona.tune.config` import no Ray; the sweep itself
(:mod:`pomona.tune.sweep`) is imported where it runs.
"""

from pomona.tune.config import SchedulerConfig, SweepConfig, trial_config
from pomona.tune.space import parse_distribution, parse_space_flag

__all__ = [
    "SchedulerConfig",
    "SweepConfig",
    "parse_distribution",
    "parse_space_flag",
    "trial_config",
]
