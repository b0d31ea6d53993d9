"""Stand-ins for the five reference contests: small generated data sets written in exactly
each contest's file layout, column names and quirks, so the whole pipeline (prepare -> train ->
submission -> score) runs without the real data. ``comptk prepare NAME`` builds one; real contest
data is used by pointing ``--data`` at it instead, with no other change.

Every stand-in writes, besides the contest's own files, ``answers.csv`` (held-out test labels in
the submission's format, for ``comptk score``) and ``STANDIN.md`` (what it reproduces).
Images are synthetic (or drawn from scikit-learn's digits), so nothing needs a download.
"""

from . import artist, cifar10, illustration, kfood, mask  # noqa: F401  (each registers its stand-in)
from .base import STANDINS, StandIn, build_standin

__all__ = ["STANDINS", "StandIn", "build_standin"]
