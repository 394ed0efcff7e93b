"""The fan-out benchmark still runs and its own checks pass (tiny sizes)."""

from __future__ import annotations

import os
import subprocess
import sys

from hubctl import ROOT


def test_benchmark_runs_and_checks_hold():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "broadcast.py"), "--sizes", "5,12"]
        + ["--repeat", "2", "--timeout", "0.5", "--concurrency", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "N=  12: others done in" in out.stdout
    assert "TOO MUCH" not in out.stdout and "SLOW" not in out.stdout
