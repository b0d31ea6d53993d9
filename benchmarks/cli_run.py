"""The benchmarks' way to run a comptk command: in a fresh process, as a user would; stop on failure."""

from __future__ import annotations

import subprocess
import sys
import time


def comptk(*args: str) -> float:
    """Run ``python -m comptk ARGS``; return its wall time in seconds, or exit with its output on failure."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "comptk", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"comptk {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - started
