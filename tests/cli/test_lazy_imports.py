"""What the command line imports before it does anything: the heavy libraries wait until
a command needs them (scipy.stats alone took over a second of every start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["scipy.stats", "evidently", "dash", "sklearn", "pandas"]


def _imported(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120
    )
    modules = set(json.loads(out.stdout.splitlines()[-1]))
    return [m for m in HEAVY if m in modules]


def test_the_cli_imports_no_heavy_library() -> None:
    assert _imported("import modelwatch.cli") == []


def test_evaluate_starts_without_them() -> None:
    code = (
        "import modelwatch.cli, evaluators.scheduler, modelwatch.store.migrate, "
        "modelwatch.store.registry"
    )
    assert _imported(code) == []


def test_a_current_store_is_upgraded_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/current.db"
    prepare = (
        "from modelwatch.store.engine import Store\n"
        "from modelwatch.store.migrate import upgrade\n"
        f"store = Store({url!r})\n"
        "upgrade(store)\n"
    )
    subprocess.run([sys.executable, "-c", prepare], check=True, timeout=120)
    probe = f"{prepare}import json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120
    )
    assert "alembic" not in json.loads(out.stdout.splitlines()[-1])
