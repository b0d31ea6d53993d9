"""Wall-clock budgets as people write them: ``15m``, ``2h``, ``1h30m``, ``90s``, ``900``."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from ..errors import ComptkError

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_DURATION = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?")  # each unit once, largest first
MIN_BUDGET_S = 60.0  # measuring the machine, one member of a few epochs and the blend
MAX_BUDGET_S = 30 * 86400.0


def parse_budget(text: str) -> float:
    """Seconds in ``text``: a number (seconds) or parts like 1h30m, 15m, 90s (each unit once, in that order)."""
    value = str(text).strip().lower().replace(" ", "")
    parts = _DURATION.fullmatch(value)
    if re.fullmatch(_NUMBER, value):
        seconds = float(value)
    elif value and parts:
        seconds = sum(float(n) * unit for n, unit in zip(parts.groups(), (3600.0, 60.0, 1.0)) if n)
    else:
        raise ComptkError(f"--budget '{text}': expected a duration like 15m, 2h, 1h30m or 900 (seconds)")
    if seconds < MIN_BUDGET_S:
        raise ComptkError(f"--budget '{text}' is {seconds:g} s: give at least 1 min (measuring the machine, one "
                          f"member and the blend take that)")
    if seconds > MAX_BUDGET_S:
        raise ComptkError(f"--budget '{text}' is more than 30 days: give a shorter one")
    return seconds


def format_seconds(seconds: float) -> str:
    """1 h 02 min, 14 min 05 s, 42 s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def process_started() -> float:
    """The ``time.monotonic()`` reading at which this process started (Linux: /proc; elsewhere now): a command's
    budget counts from when it was typed, its imports included (about 5 s with torch). Only where this process is
    the comptk command (``comptk`` or ``python -m comptk``), not a notebook or a test runner calling the CLI."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if program.name != "comptk" and not (program.name == "__main__.py" and program.parent.name == "comptk"):
        return time.monotonic()
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - min(max(age, 0.0), 600.0)
