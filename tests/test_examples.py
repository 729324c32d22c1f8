"""What the README shows runs, and so does every example script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=False)


def test_readme_python_blocks_run() -> None:
    """Every ```python block in README.md runs to completion."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md shows no Python code"
    outputs = []
    for block in blocks:
        done = _run(["-c", block])
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "web-01 runs 1.2" in outputs[0]
    assert any("hotfix" in out for out in outputs)
    assert any(re.search(r"deploying .*env=staging.* job_id=1", out) for out in outputs)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_runs(example: Path) -> None:
    """Each script in examples/ exits 0."""
    done = _run([str(example)])
    assert done.returncode == 0, done.stderr


def test_demo_shows_retries_and_a_dead_letter() -> None:
    """The README's main job shows jobs flowing, a retry and a dead letter redriven."""
    done = _run([str(ROOT / "examples" / "demo.py")])
    assert "will retry" in done.stdout
    assert "dead letter: job" in done.stdout
    assert "redriven:" in done.stdout
