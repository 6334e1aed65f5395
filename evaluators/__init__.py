"""Evaluators: windows, the keyed metric registry and the runner (issue: scheduled evaluators).

Pure functions of polars frames to frozen results; they never open a session.
"""
