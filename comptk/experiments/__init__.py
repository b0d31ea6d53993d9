"""Comparing runs: the local leaderboard (``comptk runs``), grid sweeps, plots and experiment trackers."""
