from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "hpcbench.study",
    "hpcbench.seeding",
    "hpcbench.cli",
    "hpcbench.structures",
    "hpcbench.simulate",
    "hpcbench.metrics",
    "hpcbench.datasets.samples",
    "hpcbench.datasets.generate",
]
PLAIN = ["hpcbench.study", "hpcbench.structures", "hpcbench.simulate", "hpcbench.metrics"]


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # Import order hides cycles; importing each module first exposes them.
    _run(f"import {module}")


def test_plain_stages_do_not_import_ray_or_mlflow() -> None:
    code = "; ".join(f"import {m}" for m in PLAIN)
    loaded = _run(f"import sys; {code}; print(sorted(sys.modules))")
    for heavy in ("'ray'", "'mlflow'"):
        assert heavy not in loaded


def test_cli_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from hpcbench.cli import main\n"
        "main(['--help'])\n"
        "print([m for m in ('ray', 'abtem', 'torch', 'mlflow') if m in sys.modules])"
    )
    assert _run(code).strip().splitlines()[-1] == "[]"
