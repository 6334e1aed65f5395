"""The names the runner and the sequential comparison share, in a module of their own so
that the runner (and ``modelwatch evaluate`` through it) need not import the metrics,
which import scipy."""

from __future__ import annotations

__all__ = ["CHAMPION_OPTION", "KEY", "PRIOR_OPTION"]

KEY = "champion_challenger_sequential"
PRIOR_OPTION = "sequential_prior"
"""Earlier windows' results: ``(window_start_us, label, detail)``, set by the runner."""
CHAMPION_OPTION = "champion_version"
"""The champion's version name, set by the runner: a new champion starts a new sum."""
