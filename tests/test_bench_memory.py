"""The benchmark's memory figures are the child's own, whatever its parent holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.memory import current_rss_bytes, peak_rss_bytes

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def test_a_child_reports_its_own_peak_not_its_parents() -> None:
    """Linux carries ``ru_maxrss`` across ``exec``: a child of a large parent would report
    the parent's size as its own peak (and as "growth" in the bounded-run case). The peak
    must be the child program's own high-water mark."""
    ballast = bytearray(128 * MIB)
    for i in range(0, len(ballast), 4096):  # touch every page so it is resident
        ballast[i] = 1
    assert current_rss_bytes() > 128 * MIB
    child = subprocess.run(
        [sys.executable, "-c",
         "from benchmarks.memory import peak_rss_bytes; print(peak_rss_bytes())"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
    )
    child_peak = int(child.stdout)
    assert 0 < child_peak < 64 * MIB
    assert peak_rss_bytes() >= current_rss_bytes() > 128 * MIB
    del ballast
