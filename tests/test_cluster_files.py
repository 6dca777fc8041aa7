from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "cluster").rglob("*.sbatch"))


def test_there_is_a_slurm_script() -> None:
    assert SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_cluster_script_parses_and_uses_the_cli(script: Path) -> None:
    path = script
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-n", str(path)], check=True)
    text = path.read_text()
    # It validates before it allocates anything, and hands the cluster to the CLI.
    assert text.index("hpcbench validate") < text.index("ray start --head")
    assert re.search(r"hpcbench generate \"\$study\" --address", text)
    assert "RAY_AUTH_MODE=token" in text
