"""One Ray start for the tests of this folder: ``ray_scenario`` runs tests/serving/scale_scenario.py
once per test session (a Ray start costs tens of seconds on 2 cores) and hands every test its
work folder and JSON summary.

Ray listens on the machine's own address even when told 127.0.0.1: as root, the scenario runs
inside a private network namespace (``unshare --net``, loopback up) so nothing can leave.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent / "scale_scenario.py"
# 3 batches of 4 per actor, a resume, a bad file and dead workers; the 200-video run (and its
# videos/s) belongs to benchmarks/bench_scale.py
N_VIDEOS = 24


def isolated(cmd: list[str]) -> list[str]:
    """``cmd`` inside a private network namespace with loopback only (when root and possible)."""
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        inner = " ".join(f"'{c}'" for c in cmd)
        return ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {inner}"]
    return cmd


@pytest.fixture(scope="session")
def ray_scenario(tmp_path_factory) -> tuple[Path, dict]:
    """(work folder, summary) of the Ray scenario. Run once per test session even when pytest-xdist
    hands these tests to both workers: the first worker runs it under a lock in the folder the
    workers share, the other reads its summary."""
    import fcntl

    pytest.importorskip("ray")
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work = root / "ray_scale_scenario"
    with open(root / "ray_scale_scenario.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = work / "summary.json"
        if not summary.is_file():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
            env.pop("TRITON_INTERPRET", None)
            proc = subprocess.run(isolated([sys.executable, str(SCENARIO), str(work), str(N_VIDEOS)]),
                                  capture_output=True, text=True, env=env, timeout=600)
            assert proc.returncode == 0, proc.stderr[-4000:]
            summary.write_text(proc.stdout.strip().splitlines()[-1])
        return work, json.loads(summary.read_text())
