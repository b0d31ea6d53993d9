"""Wall-clock budgets as people write them: ``15m``, ``2h``, ``1h30m``, ``90s``, ``900``."""

from __future__ import annotations

import re

from ..errors import ComptkError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_budget(text: str) -> float:
    """Seconds in ``text``: a number (seconds) or parts like 1h30m, 15m, 90s."""
    value = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif value and _PART.sub("", value) == "" and _PART.findall(value):
        seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(value))
    else:
        raise ComptkError(f"--budget '{text}': expected a duration like 15m, 2h, 1h30m or 900 (seconds)")
    if seconds < 30:
        raise ComptkError(f"--budget '{text}' is {seconds:g} s: give at least 30 s")
    return seconds


def format_seconds(seconds: float) -> str:
    """1 h 02 min, 14 min 05 s, 42 s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
