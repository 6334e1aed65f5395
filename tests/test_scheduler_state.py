"""The scheduler state a ``serve --workers N`` parent publishes for its API processes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from evaluators.scheduler import SchedulerState
from modelwatch.scheduler_state import SchedulerStateFile, publish_state, read_state


def test_published_state_reads_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    state = SchedulerState(
        running=True, planned=7, evaluated=5, failed=1, last_plan_at=1.5e9, monitors=["a", "b"]
    )
    publish_state(state, path)
    assert read_state(path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["scheduler.json"]  # no temporary left


def test_missing_or_unreadable_state_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "scheduler.json"
    assert read_state(path) is None  # before the first publication: no scheduler families
    path.write_text('{"running": tr')
    with caplog.at_level(logging.WARNING):
        assert read_state(path) is None
    assert "unreadable scheduler state" in caplog.text
    path.write_text('{"running": true, "renamed_field": 1}')
    assert read_state(path) is None  # written by another modelwatch version


def test_publishing_into_a_missing_directory_logs_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        publish_state(SchedulerState(), tmp_path / "gone" / "scheduler.json")
    assert "publishing the scheduler state" in caplog.text


def test_state_file_rereads_only_after_max_age(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    publish_state(SchedulerState(running=True, evaluated=1), path)
    cached = SchedulerStateFile(path, max_age_s=3600)
    fresh = SchedulerStateFile(path, max_age_s=0)
    assert [s.evaluated for s in (cached(), fresh()) if s] == [1, 1]
    publish_state(SchedulerState(running=True, evaluated=2), path)
    assert [s.evaluated for s in (cached(), fresh()) if s] == [1, 2]
    os.remove(path)
    assert fresh() is None
