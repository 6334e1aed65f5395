"""SQLite writers queue on a lock beside the database, across processes as across threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelwatch.errors import StoreError
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.writelock import lock_path

HOLD_S = 0.8

# Holds a write transaction, writing nothing (so SQLite itself locks nothing), for HOLD_S.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelwatch.store.engine import Store
    store = Store(sys.argv[1])
    with store.write():
        Path(sys.argv[2]).write_text("held")
        time.sleep(float(sys.argv[3]))
        released = time.time()
    Path(sys.argv[2]).write_text(repr(released))
    """
)


def test_lock_file_sits_beside_a_file_database_only() -> None:
    assert lock_path("data/modelwatch.db") == Path("data/modelwatch.db.write-lock")
    assert lock_path(":memory:") is None
    assert lock_path("") is None
    assert lock_path(None) is None
    assert lock_path("file:mem?mode=memory&uri=true") is None


def test_a_write_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/modelwatch.db"
    store = Store(url)
    upgrade(store)
    marker = tmp_path / "marker"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(marker), str(HOLD_S)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "holder did not start"
            time.sleep(0.01)
        with store.write():
            entered = time.time()
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
    released = float(marker.read_text())
    assert entered >= released
    assert (tmp_path / "modelwatch.db.write-lock").exists()
    store.dispose()


def test_lock_that_cannot_be_taken_is_a_store_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/missing-dir/modelwatch.db")
    expected = r"cannot take the SQLite write lock .*missing-dir"
    with pytest.raises(StoreError, match=expected), store.write():
        pass
    store.dispose()
