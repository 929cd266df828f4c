"""The package's shape (docs/architecture.md): no import cycle, the library never imports the
applications, modules stay readable, code cites only documents inside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"mse_rt": "mse_rt", "kernels": "mse_rt.kernels", "export": "mse_rt.export"}
APPLICATIONS = ("mse_rt.cli", "mse_rt.apps", "mse_rt.__main__")
MAX_LINES = 400


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for folder, prefix in SOURCES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = (path, is_pkg)
    return out


def _imports(modules) -> list[tuple[str, str, bool]]:
    """(importer, imported module, lazy) for every import of an mse_rt module."""
    edges = []
    for name, (path, is_pkg) in modules.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            lazy = id(node) not in top
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("mse_rt"):
                    continue
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{target}.{alias.name}"
                    edges.append((name, sub if sub in modules else target, lazy))
            elif isinstance(node, ast.Import):
                edges += [(name, a.name, lazy) for a in node.names if a.name.startswith("mse_rt")]
    return [(a, b, lazy) for a, b, lazy in edges if b in modules and a != b]


def _cycle(nodes, edges) -> list[str] | None:
    """One cycle of the directed graph, or None (iterative DFS)."""
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph[a].append(b)
    state: dict[str, int] = {}
    for root in graph:
        if root in state:
            continue
        stack = [(root, iter(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    return None


def test_no_import_cycle():
    """With lazy (function-level) imports counted too, no module can reach itself. (A module's
    parent packages are imported before it runs; only explicit imports count as edges.)"""
    modules = _modules()
    cycle = _cycle(modules, [(a, b) for a, b, _ in _imports(modules)])
    assert cycle is None, " -> ".join(cycle)


def test_the_library_never_imports_the_applications():
    modules = _modules()
    bad = [(a, b) for a, b, _ in _imports(modules)
           if not a.startswith(APPLICATIONS) and b.startswith(APPLICATIONS)]
    assert not bad, bad


def test_modules_stay_short_or_say_why():
    long = []
    for name, (path, _) in _modules().items():
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "Over 400 lines:" not in doc:
            long.append(f"{name}: {lines} lines")
    assert not long, long


def test_code_cites_only_documents_in_the_repository():
    """No SPEC.md / ../shared references; every docs/ page a comment cites exists."""
    cited, outside = set(), []
    for folder in ("mse_rt", "kernels", "export", "benchmarks", "tests"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in (".py", ".cpp") or path == Path(__file__).resolve():
                continue
            text = path.read_text()
            if re.search(r"SPEC\.md|SPEC section|\.\./shared|/work/shared", text):
                outside.append(str(path.relative_to(REPO)))
            cited |= {m.rstrip(".,)") for m in re.findall(r"docs/[\w/.-]+\.(?:md|png)", text)}
    assert not outside, outside
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert not missing, missing
