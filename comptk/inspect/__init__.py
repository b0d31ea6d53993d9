"""comptk inspect: data report, duplicates and fold leakage, label issues, outliers."""

from .duplicates import find_duplicates, near_pairs
from .inspector import InspectResult, inspect_competition
from .labels import find_label_issues, label_issues
from .scan import scan_images

__all__ = ["InspectResult", "find_duplicates", "find_label_issues", "inspect_competition", "label_issues",
           "near_pairs", "scan_images"]
