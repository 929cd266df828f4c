"""benchmarks/harness.py: reports written after every table (atomically), timing statistics
against numpy, the machine block, and the one way the scripts import mse_rt."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from mse_rt.errors import OutputError

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
REPO = BENCH.parent


@pytest.fixture(scope="module")
def harness():
    with pytest.MonkeyPatch.context() as mp:  # as the scripts see it: benchmarks/ first on sys.path
        mp.syspath_prepend(str(BENCH))
        return importlib.import_module("harness")


def _read(tmp_path, name="run"):
    return (tmp_path / f"{name}.md").read_text(), json.loads((tmp_path / f"{name}.json").read_text())


def test_each_table_is_on_disk_as_soon_as_it_is_added(harness, tmp_path):
    r = harness.Report("run", tmp_path, title="A run", echo=False)
    r.note("what was run")
    r.table("first", ["T", "ms", "speed-up"], [(64, 1.23456, 2.0), (128, 2.5, 1.5)],
            formats={"ms": ".2f", "speed-up": "{:.1f}x"})
    md, js = _read(tmp_path)
    assert "# A run" in md and "what was run" in md and "## first" in md
    assert "| T | ms | speed-up |" in md and "| 64 | 1.23 | 2.0x |" in md and "| 128 | 2.50 | 1.5x |" in md
    # JSON keeps the values, not their printed form
    assert js["tables"] == [{"title": "first", "columns": ["T", "ms", "speed-up"], "rows": [[64, 1.23456, 2.0],
                                                                                          [128, 2.5, 1.5]],
                             "note": None}]
    assert js["name"] == "run" and js["notes"] == ["what was run"]
    for key in ("date", "command", "cpu", "cores", "versions", "threads"):
        assert key in js["machine"], key
    assert js["machine"]["cores"] == os.cpu_count()
    # a second table grows row by row; each row is written before the next is measured (a kill
    # keeps it), and the first table stays
    t = r.table("second", ["name", "value"], note="incremental")
    t.add("a", 1)
    md, js = _read(tmp_path)
    assert [x["title"] for x in js["tables"]] == ["first", "second"] and js["tables"][1]["rows"] == [["a", 1]]
    assert md.index("## first") < md.index("## second") and "| a | 1 |" in md and "incremental" in md
    t.add("b", None)
    r.data["raw"] = {"seconds": np.float64(0.5), "shape": (2, 3)}
    r.write()
    md, js = _read(tmp_path)
    assert js["tables"][1]["rows"] == [["a", 1], ["b", None]] and "| b |  |" in md
    assert js["data"] == {"raw": {"seconds": 0.5, "shape": [2, 3]}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.md"]


def test_rows_must_fit_the_columns(harness, tmp_path):
    r = harness.Report("run", tmp_path, echo=False)
    t = r.table("t", ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 columns"):
        t.add(1, 2, 3, 4)
    t.add("only a")  # fewer cells: the rest empty
    assert _read(tmp_path)[1]["tables"][0]["rows"] == [["only a", None, None]]
    with pytest.raises(ValueError, match="unknown columns"):
        r.table("u", ["a"], formats={"b": ".1f"})
    with pytest.raises(ValueError, match="file stem"):
        harness.Report("../escape", tmp_path)


def test_cells_cannot_break_the_markdown_table(harness, tmp_path):
    r = harness.Report("run", tmp_path, echo=False)
    r.table("t", ["a", "b"], [("x | y", "two\nlines")])
    assert "| x \\| y | two lines |" in _read(tmp_path)[0]


def test_a_failed_write_leaves_the_previous_report_whole(harness, tmp_path, monkeypatch):
    r = harness.Report("run", tmp_path, echo=False)
    r.table("first", ["a"], [(1,)])
    before = [(tmp_path / n).read_bytes() for n in ("run.md", "run.json")]

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match="No space left"):
        r.table("second", ["a"], [(2,)])
    monkeypatch.undo()
    assert [(tmp_path / n).read_bytes() for n in ("run.md", "run.json")] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.md"]  # no temporary file left


def test_without_out_the_report_only_prints(harness, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    r = harness.Report("run", None, title="Printed")
    t = r.table("t", ["a", "b"], formats={"b": ".1f"})
    t.add("x", 2.25)
    out = capsys.readouterr().out
    assert "# Printed" in out and "## t" in out and "| a | b |" in out and "| x | 2.2 |" in out
    assert r.md_path is None and list(tmp_path.iterdir()) == []


def test_measure_warms_up_then_times_each_call(harness, monkeypatch):
    clock = [100.0]
    durations = iter([7.0, 9.0, 1.0, 3.0, 2.0])  # two warm-up calls, then three timed ones
    calls = []

    def fn():
        calls.append(1)
        clock[0] += next(durations)
        return len(calls)

    monkeypatch.setattr(harness, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    t = harness.measure(fn, repeat=3, warmup=2)
    assert len(calls) == 5 and t.seconds == (1.0, 3.0, 2.0) and t.result == 5
    assert t.median == 2.0 and t.min == 1.0
    with pytest.raises(ValueError, match="repeat"):
        harness.measure(fn, repeat=0)


def test_median_seconds_and_summaries_agree_with_numpy(harness):
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40):
        xs = list(rng.exponential(0.2, n))
        s = harness.summarize(xs, percentiles=(0, 5, 50, 90, 95, 99.5, 100))
        assert s["n"] == n and s["median"] == pytest.approx(np.median(xs)) and s["mean"] == pytest.approx(np.mean(xs))
        assert s["min"] == min(xs) and s["max"] == max(xs)
        for q in (0, 5, 50, 90, 95, 99.5, 100):
            assert s[f"p{q:g}"] == pytest.approx(np.percentile(xs, q), rel=1e-12), (n, q)
    with pytest.raises(ValueError):
        harness.percentile([], 50)
    with pytest.raises(ValueError):
        harness.percentile([1.0], 101)


def test_machine_names_versions_and_threads_but_not_the_host(harness):
    import torch

    m = harness.machine()
    assert m["versions"]["torch"] == torch.__version__ and m["versions"]["numpy"] == np.__version__
    assert m["threads"]["torch"] == torch.get_num_threads()
    assert isinstance(m["cpu"], str) and m["cpu"]
    assert 1 <= m["usable_cores"] <= m["cores"]
    assert m["versions"].get("no_such_package_xyz") is None
    host = socket.gethostname()
    if len(host) >= 4:  # a very short name could occur inside other fields by chance
        assert host not in json.dumps(m)
    assert "Run: " in harness.machine_line(m) and m["date"][:4] in harness.machine_line(m)


def _python(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_use_source_tree_takes_the_installed_package_when_it_imports(tmp_path):
    out = _python(f"""
        import sys
        sys.path.insert(0, {str(BENCH)!r})
        import harness
        first = harness.use_source_tree()
        print(first, harness.use_source_tree())
        """, tmp_path)
    assert out == "installed package installed package"


def test_use_source_tree_maps_kernels_and_export_from_the_tree_when_not_installed(tmp_path):
    """As on the device machine: no installed package (the editable install's finder removed);
    a namespace package left in site-packages (the built C++ module's folder) must not win."""
    out = _python(f"""
        import json, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
        try:
            import mse_rt.export
            sys.exit("precondition: mse_rt.export must not be importable here")
        except ImportError:
            pass
        sys.path.insert(0, {str(BENCH)!r})
        import harness
        how = harness.use_source_tree()
        import mse_rt, mse_rt.export, mse_rt.kernels
        from mse_rt.export import formats
        from mse_rt.pipeline import segments
        print(json.dumps([how, mse_rt.__file__, mse_rt.kernels.__file__, mse_rt.export.__file__, formats.__file__,
                          segments.__file__, harness.machine()["mse_rt"]["from"]]))
        """, tmp_path)
    how, pkg, kernels, export, formats, segments, recorded = json.loads(out)
    assert how == recorded == "source tree"
    assert Path(pkg) == REPO / "mse_rt" / "__init__.py"
    assert Path(kernels) == REPO / "kernels" / "__init__.py"
    assert Path(export) == REPO / "export" / "__init__.py"
    assert Path(formats) == REPO / "export" / "formats.py"
    assert Path(segments) == REPO / "mse_rt" / "pipeline" / "segments.py"
