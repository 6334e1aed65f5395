"""What the command line imports before it does anything: the heavy libraries wait until
a command needs them (scipy.stats alone took over a second of every start)."""

from __future__ import annotations

import json
import subprocess
import sys

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
