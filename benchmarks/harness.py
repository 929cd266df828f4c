"""The one harness of the benchmark scripts: importing mse_rt, timing calls, describing the run, writing reports.

Every script under ``benchmarks/`` runs as ``python benchmarks/<script>.py`` (so this folder is
first on ``sys.path`` and ``import harness`` works) and follows one pattern::

    from harness import Report, add_out_argument, median_seconds, use_source_tree

    use_source_tree()               # before the first mse_rt import
    from mse_rt import ...          # noqa: E402

    report = Report("attention_layout", args.out, title="...")
    t = report.table("Eager forward", ["T", "s"], formats={"s": ".3f"})
    t.add(2304, 1.234)              # printed at once; OUT/attention_layout.md / .json rewritten

* :func:`use_source_tree`: mse_rt as installed when that imports, else this source tree with
  ``kernels/`` and ``export/`` mapped in as ``mse_rt.kernels`` / ``mse_rt.export`` (the device
  machine runs the tree without installing it).
* :func:`measure` / :func:`median_seconds` / :func:`summarize` / :func:`percentile`: wall-clock
  seconds of repeated calls after warm-up ones, and their median / min / max / percentiles.
* :func:`machine`: what the numbers were measured on (date, command line, CPU model, cores,
  package versions, threads), without the host name.
* :class:`Report`: titled tables (columns + rows) and notes, printed as they come and written
  as ``OUT/<name>.md`` and ``OUT/<name>.json`` (with the :func:`machine` block) after every
  table, note and row, each file atomically: a killed run keeps what had finished.

Nothing here imports mse_rt at module level: :func:`use_source_tree` decides where it comes from.
Over 400 lines: it is the one module every benchmark script imports; split, each script would
again gather its helpers from several files.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import numbers
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "mse_rt" / "assets" / "configs"  # the published configs shipped in the package
THUMOS_CONFIG = CONFIGS / "thumos_i3d.yaml"  # the THUMOS-size model most benchmarks time (random weights)

_IMPORTED_FROM: str | None = None  # what use_source_tree() found, once it ran


# ---------------------------------------------------------------------------------------------
# importing mse_rt


def use_source_tree() -> str:
    """Make ``mse_rt`` importable: ``"installed package"`` when ``mse_rt``, ``mse_rt.kernels`` and
    ``mse_rt.export`` import as installed, else ``"source tree"`` after putting this repository
    first on ``sys.path`` and mapping ``kernels/`` / ``export/`` in as ``mse_rt.kernels`` /
    ``mse_rt.export`` (what the wheel's package mapping does). Call it before the first mse_rt
    import; later calls return the first answer and change nothing."""
    global _IMPORTED_FROM
    if _IMPORTED_FROM is None:
        _IMPORTED_FROM = _import_mse_rt()
    return _IMPORTED_FROM


def _import_mse_rt() -> str:
    try:
        import mse_rt.export  # noqa: F401
        import mse_rt.kernels  # noqa: F401

        return "installed package"
    except ImportError:
        pass
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    # a half-imported package (e.g. a namespace package left by an install without its sources)
    # must not shadow the tree's modules
    for name in [m for m in sys.modules if m == "mse_rt" or m.startswith("mse_rt.")]:
        del sys.modules[name]
    import mse_rt

    for sub in ("kernels", "export"):
        spec = importlib.util.spec_from_file_location(f"mse_rt.{sub}", REPO / sub / "__init__.py",
                                                      submodule_search_locations=[str(REPO / sub)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"mse_rt.{sub}"] = module
        spec.loader.exec_module(module)
        setattr(mse_rt, sub, module)
    return "source tree"


# ---------------------------------------------------------------------------------------------
# timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed call of :func:`measure`, and what the last one returned."""

    seconds: tuple[float, ...]
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    def summary(self, percentiles: Iterable[float] = (50, 95)) -> dict[str, float]:
        return summarize(self.seconds, percentiles)


def measure(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeat`` times, each timed alone with
    ``time.perf_counter`` (seconds). CPU work only: a GPU script synchronises inside ``fn``."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"measure: repeat must be >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    seconds, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return Timing(tuple(seconds), result)


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs after ``warmup`` untimed ones."""
    return measure(fn, repeat, warmup).median


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``xs`` with linear interpolation between the two
    nearest ranks (numpy's default method)."""
    if not xs:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(xs: Sequence[float], percentiles: Iterable[float] = (50, 95)) -> dict[str, float]:
    """{"n", "median", "mean", "min", "max", "p<q>" for each q} of a non-empty sample (its units)."""
    if not xs:
        raise ValueError("summarize: empty sample")
    out = {"n": len(xs), "median": statistics.median(xs), "mean": statistics.fmean(xs), "min": min(xs),
           "max": max(xs)}
    for q in percentiles:
        out[f"p{q:g}"] = percentile(xs, q)
    return out


# ---------------------------------------------------------------------------------------------
# the machine


_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
_PACKAGES = (("numpy", "numpy"), ("torch", "torch"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
             ("triton", "triton"), ("nncf", "nncf"))


def _cpu() -> tuple[str, list[str]]:
    """CPU model string and the vector-ISA flags of interest (from /proc/cpuinfo where there is one)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), [f for f in _ISA_FLAGS if f in flags]


def _version(module: str, dist: str) -> str | None:
    """Version of an importable package (None when not importable), without importing it when
    the script has not."""
    if module in sys.modules:
        return str(getattr(sys.modules[module], "__version__", "unknown"))
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _command() -> str:
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    argv[0] = Path(argv[0]).name
    for i, a in enumerate(argv[1:], 1):  # the script path, relative to the repository when inside it
        p = Path(a)
        if p.is_absolute() and p.suffix == ".py" and p.is_relative_to(REPO):
            argv[i] = str(p.relative_to(REPO))
    return shlex.join(argv)


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def machine() -> dict[str, Any]:
    """What a run measured on: date (UTC), the command line, CPU model and ISA flags, cores (all /
    usable by this process), OS, Python and package versions (None: not importable), threads
    (torch's when torch is imported, the OpenMP environment), the GPU when torch sees one, and
    where mse_rt came from (:func:`use_source_tree`) at which commit. No host name."""
    cpu, isa = _cpu()
    torch = sys.modules.get("torch")
    gpu = None
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": {name: _version(module, name) for module, name in _PACKAGES},
        "threads": {"torch": torch.get_num_threads() if torch is not None else None,
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "gpu": gpu,
        "mse_rt": {"from": _IMPORTED_FROM, "commit": _git_commit()},
    }


def machine_line(m: Mapping[str, Any]) -> str:
    """One markdown line of a :func:`machine` block."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v is not None and k != "numpy")
    threads = m["threads"]
    parts = [m["date"], f"`{m['command']}`", f"{m['cpu']} ({m['usable_cores']} of {m['cores']} cores"
             + (f", {' '.join(m['isa'])})" if m["isa"] else ")"), f"Python {m['python']}", versions,
             f"torch threads {threads['torch'] if threads['torch'] is not None else '-'}"]
    if threads["OMP_WAIT_POLICY"]:
        parts.append(f"OMP_WAIT_POLICY={threads['OMP_WAIT_POLICY']}")
    if m["gpu"]:
        parts.append(m["gpu"])
    src = m["mse_rt"]
    if src["from"] or src["commit"]:
        parts.append("mse_rt" + (f" from the {src['from']}" if src["from"] else "")
                     + (f" at {src['commit']}" if src["commit"] else ""))
    return "Run: " + " · ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# reports


def add_out_argument(ap: argparse.ArgumentParser, default: str | None = None, help: str | None = None) -> None:
    """The ``--out DIR`` option every script has (``default`` None: print only, write nothing)."""
    ap.add_argument("--out", default=default, metavar="DIR",
                    help=help or ("write the report there as <name>.md and <name>.json"
                                  + (f" (default {default})" if default else " (default: print only)")))


def _cell(value: Any, fmt: str | None) -> str:
    if value is None:
        return ""
    if fmt and isinstance(value, numbers.Number) and not isinstance(value, bool):
        text = fmt.format(value) if "{" in fmt else format(value, fmt)
    else:
        text = str(value)
    return text.replace("\n", " ").replace("|", "\\|")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Table:
    """A titled table of a :class:`Report`: ``columns`` names, ``rows`` of cells (any JSON-able
    values; None prints empty). ``formats`` maps a column to a format for numbers in markdown
    (``".3f"``, or a template such as ``"{:.2f}x"``); JSON keeps the values themselves."""

    def __init__(self, report: Report, title: str, columns: Sequence[str], note: str | None,
                 formats: Mapping[str, str] | None, echo: bool) -> None:
        unknown = set(formats or {}) - set(columns)
        if unknown:
            raise ValueError(f"table {title!r}: formats for unknown columns {sorted(unknown)}; columns {list(columns)}")
        self.report, self.title, self.columns, self.note = report, title, list(columns), note
        self.formats = dict(formats or {})
        self.rows: list[list[Any]] = []
        self.echo = echo

    def add(self, *cells: Any, write: bool = True) -> None:
        """Append a row (fewer cells than columns: the rest empty), print it, rewrite the report."""
        if len(cells) > len(self.columns):
            raise ValueError(f"table {self.title!r}: a row of {len(cells)} cells for {len(self.columns)} columns "
                             f"{self.columns}: {cells!r}")
        row = list(cells) + [None] * (len(self.columns) - len(cells))
        self.rows.append(row)
        if self.echo:
            print(self._line(row), flush=True)
        if write:
            self.report.write()

    def _line(self, row: Sequence[Any]) -> str:
        return "| " + " | ".join(_cell(v, self.formats.get(c)) for c, v in zip(self.columns, row)) + " |"

    def header_lines(self) -> list[str]:
        lines = ["", f"## {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        return lines + ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]

    def markdown_lines(self) -> list[str]:
        return self.header_lines() + [self._line(r) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note}


class Report:
    """Tables and notes of one benchmark run, printed as they come and written as
    ``out / f"{name}.md"`` and ``out / f"{name}.json"`` after every change (each file replaced
    atomically through :func:`mse_rt.io.files.atomic_write_text`), with the :func:`machine` block
    taken at the first write. ``out`` None: print only. ``data`` holds extra JSON-able raw results
    (per-call times, arguments) for the JSON file; call :meth:`write` after changing it.

    JSON layout: {"name", "title", "machine", "notes": [str], "tables": [{"title", "columns",
    "rows", "note"}], "data"}; the markdown keeps notes and tables in the order they were added.
    """

    def __init__(self, name: str, out: str | Path | None, title: str | None = None, echo: bool = True) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"report name {name!r}: give a plain file stem such as 'ov_profile'")
        self.name, self.title, self.echo = name, title, echo
        self.out = Path(out) if out is not None else None
        self.data: dict[str, Any] = {}
        self.machine: dict[str, Any] | None = None
        self._blocks: list[str | Table] = []
        if echo and title:
            print(f"# {title}", flush=True)

    @property
    def tables(self) -> list[Table]:
        return [b for b in self._blocks if isinstance(b, Table)]

    @property
    def notes(self) -> list[str]:
        return [b for b in self._blocks if isinstance(b, str)]

    @property
    def md_path(self) -> Path | None:
        return self.out / f"{self.name}.md" if self.out is not None else None

    @property
    def json_path(self) -> Path | None:
        return self.out / f"{self.name}.json" if self.out is not None else None

    def note(self, text: str, write: bool = True) -> None:
        """A paragraph of markdown (what was run, how to read the table), printed and written."""
        self._blocks.append(text)
        if self.echo:
            print(f"\n{text}", flush=True)
        if write:
            self.write()

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]] | None = None, *,
              note: str | None = None, formats: Mapping[str, str] | None = None, echo: bool | None = None) -> Table:
        """Start a table (printed: its title and header now, each row as :meth:`Table.add` gets it);
        ``rows`` given: added at once and written once."""
        t = Table(self, title, columns, note, formats, self.echo if echo is None else echo)
        self._blocks.append(t)
        if t.echo:
            print("\n".join(t.header_lines()), flush=True)
        for r in rows or ():
            t.add(*r, write=False)
        self.write()
        return t

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""] if self.title else []
        lines.append(machine_line(self.machine or machine()))
        for b in self._blocks:
            lines += b.markdown_lines() if isinstance(b, Table) else ["", b]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "machine": self.machine or machine(), "notes": self.notes,
                "tables": [t.to_json() for t in self.tables], "data": self.data}

    def write(self) -> None:
        """Rewrite both files (no-op without ``out``); markdown first, each one atomically."""
        if self.out is None:
            return
        use_source_tree()
        from mse_rt.io.files import atomic_write_text

        if self.machine is None:
            self.machine = machine()
        atomic_write_text(self.md_path, self.markdown(), what="benchmark report")
        atomic_write_text(self.json_path, json.dumps(self.to_json(), indent=1, default=_jsonable) + "\n",
                          what="benchmark report")
