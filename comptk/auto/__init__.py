"""``comptk auto NAME --budget 15m``: the best submission comptk can make in a wall-clock budget.

- budget.py: "15m" / "2h" / "1h30m" -> seconds
- measure.py: timed training steps and prediction batches per model family
- plan.py: members (families x seeds x epochs) that fit the budget, and the time model
- runner.py: train each member as a normal run, re-plan after each, blend, report
(comptk/child_process.py: a member's child process ends with auto's)
"""

from .budget import format_seconds, parse_budget
from .runner import AutoResult, run_auto

__all__ = ["AutoResult", "format_seconds", "parse_budget", "run_auto"]
