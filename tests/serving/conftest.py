"""One Ray start for the tests of this folder: ``ray_scenario`` hands every test the work folder and
JSON summary of tests/serving/scale_scenario.py, run once per test session (a Ray start costs tens
of seconds on 2 cores).

The scenario is started in the background as soon as a collected test needs it (by whichever
pytest-xdist worker collects first: an exclusive-create marker in the folder the workers share), so
it runs beside the other tests instead of holding both workers at the end; the fixture waits for
its result. Ray listens on the machine's own address even when told 127.0.0.1: as root, the
scenario runs inside a private network namespace (``unshare --net``, loopback up) so nothing can
leave.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent / "scale_scenario.py"
# 3 batches of 4 per actor, a resume, a bad file and dead workers; the 200-video run (and its
# videos/s) belongs to benchmarks/bench_scale.py
N_VIDEOS = 24
TIMEOUT_S = 900


def isolated(cmd: list[str]) -> list[str]:
    """``cmd`` inside a private network namespace with loopback only (when root and possible)."""
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        inner = " ".join(f"'{c}'" for c in cmd)
        return ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {inner}"]
    return cmd


def _work_dir(base: Path) -> Path:
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return root / "ray_scale_scenario"


def _start(work: Path) -> None:
    """Start the scenario once (the first caller wins the marker); its stdout, stderr and exit code
    go to files in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(work / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("TRITON_INTERPRET", None)
    cmd = isolated([sys.executable, str(SCENARIO), str(work / "run"), str(N_VIDEOS)])
    q = {k: shlex.quote(str(work / k)) for k in ("stdout", "stderr", "rc.tmp", "rc")}
    script = f'{shlex.join(cmd)} > {q["stdout"]} 2> {q["stderr"]}; echo $? > {q["rc.tmp"]}; mv {q["rc.tmp"]} {q["rc"]}'
    (work / "run").mkdir(exist_ok=True)
    subprocess.Popen(["bash", "-c", script], env=env, start_new_session=True, stdin=subprocess.DEVNULL)


@pytest.hookimpl(trylast=True)  # after `-m` / `-k` deselection: `make test-fast` runs no Ray test
def pytest_collection_modifyitems(session, config, items) -> None:
    if config.option.collectonly:
        return
    if importlib.util.find_spec("ray") and any("ray_scenario" in getattr(i, "fixturenames", ()) for i in items):
        _start(_work_dir(config._tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="session")
def ray_scenario(tmp_path_factory) -> tuple[Path, dict]:
    """(work folder, summary) of the Ray scenario, waiting (up to TIMEOUT_S) for the run started at
    collection (or starting it now when collection did not)."""
    pytest.importorskip("ray")
    work = _work_dir(tmp_path_factory.getbasetemp())
    _start(work)
    t0 = time.monotonic()
    while not (work / "rc").is_file():
        if time.monotonic() - t0 > TIMEOUT_S:
            pytest.fail(f"the Ray scenario did not finish within {TIMEOUT_S} s (see {work})")
        time.sleep(0.5)
    rc = (work / "rc").read_text().strip()
    err = (work / "stderr").read_text(errors="replace") if (work / "stderr").exists() else ""
    assert rc == "0", f"the Ray scenario exited {rc}: {err[-4000:]}"
    lines = (work / "stdout").read_text().strip().splitlines()
    return work / "run", json.loads(lines[-1])
