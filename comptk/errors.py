"""The one exception type for user mistakes.

Library code raises :class:`ComptkError` for anything the user can fix (a bad
declaration, a missing file, an impossible option). The CLI prints its message
as one line and exits non-zero; any other exception is a bug in comptk.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ComptkError(Exception):
    """A user mistake: the message names the thing, the constraint and the value."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


class WriteError(ComptkError, OSError):
    """A file or folder could not be written (disk full, a file size limit, a read-only folder).

    Also an ``OSError``, so code that tolerates a failed optional write (the image cache)
    still catches it; the CLI prints it as one line like any ComptkError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
