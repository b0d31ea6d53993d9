"""A member's child process (``comptk train``) ends with ``comptk auto``'s, however auto ends.

auto stops its member's child on Ctrl-C, SIGTERM and SIGHUP (runner.py), but a process killed with SIGKILL runs no
code: its child would go on training with no budget and nobody to blend it. On Linux the child asks the kernel for
SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), first thing after it starts, told to by
``COMPTK_PARENT_PID``; it does so itself rather than in a ``preexec_fn`` (code between fork and exec in a parent
with torch's threads can deadlock).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import IO

PARENT_PID = "COMPTK_PARENT_PID"
PR_SET_PDEATHSIG = 1


def spawn_member(command: list[str], log: IO[bytes]) -> subprocess.Popen:
    """Start a member's child (its own session, so signals to auto's terminal reach auto alone), told to end
    with this process."""
    env = {**os.environ, PARENT_PID: str(os.getpid())}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def die_with_parent() -> None:
    """In a child started by spawn_member (``COMPTK_PARENT_PID`` set): get SIGTERM when that parent dies (Linux),
    and end now if it already has. Elsewhere, or not started so, nothing."""
    parent = os.environ.pop(PARENT_PID, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:  # auto died before the call above
        os._exit(1)
