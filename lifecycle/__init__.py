"""Data lifecycle: retention of the hot store (and, with an archive, what leaves it)."""
