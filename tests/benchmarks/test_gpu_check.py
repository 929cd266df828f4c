"""benchmarks/gpu_check.py plans a default run that fits the device's time (checked on CPU with --dry-run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _dry_run(tmp_path, *extra):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path), *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [r for r in (tmp_path / "gpu_check.md").read_text().splitlines() if r.startswith("| ") and "---" not in r]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]  # drop the header


def test_default_run_fits_five_minutes(tmp_path):
    plan = _dry_run(tmp_path)
    names = [r[0] for r in plan]
    assert names == ["kernels", "nms golden", "backend golden", "dense thumos", "kernel bandwidth", "end to end",
                     "nms bench", "tensorrt"]
    import importlib.util

    counted = plan if importlib.util.find_spec("tensorrt") is None else plan[:-1]
    assert float(counted[-1][2]) <= 300, f"default plan needs {counted[-1][2]} s"
    assert (tmp_path / "gpu_check.json").is_file()


def test_full_run_is_planned_longer_and_budget_marks_what_is_left_out(tmp_path):
    full = _dry_run(tmp_path, "--full", "--budget", "120")
    assert float(full[-1][2]) > 300
    assert any("skipped" in r[3] for r in full) and full[0][3] == "yes"
